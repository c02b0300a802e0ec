"""The model shipped inside the package: a Conv-4 ProtoNet trained on Omniglot's background alphabets.

``fewshot serve``, ``fewshot gallery create`` and :meth:`fewshot.gallery.Gallery.create` use it
when no run is named, so a fresh install recognises drawings with no training and no network.
How it was trained and what it scores are in docs/benchmarks.md ("The packaged model"). Its
folder is a run directory (``config.yaml``, ``model.safetensors``) plus ``calibration.json``,
the unknown threshold chosen on the evaluation alphabets, which it never trained on.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "omniglot_conv4"
CALIBRATION_FILE = "calibration.json"


def model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The run directory of a packaged model.

    Example:
        >>> sorted(p.name for p in model_dir().iterdir())
        ['calibration.json', 'config.yaml', 'model.safetensors']
    """
    return Path(str(resources.files(__package__) / name))
