"""Experiment trackers: the records of ``metrics.jsonl`` also sent to TensorBoard or Weights & Biases.

Each record (``event`` train, validation or end, at a ``step``) becomes scalars named
``EVENT/KEY`` at that step, e.g. ``train/loss`` and ``validation/val_accuracy``; the run's config
goes with them (TensorBoard: as text, W&B: as the run config). Only rank 0 of a distributed run
tracks. Each tracker is an optional extra: ``pip install 'fewshot[tensorboard]'`` or
``'fewshot[wandb]'``. W&B follows its own environment, e.g. ``WANDB_MODE=offline`` to write the run
under ``RUN/wandb/`` without a network, and ``WANDB_PROJECT`` (default ``fewshot``).
"""
from __future__ import annotations

import importlib.util
import os
import secrets
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from fewshot.errors import FewShotError
from fewshot.files import atomic_write_text
from fewshot.training.config import RunConfig

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb-id.txt"


def check_tracker(name: str) -> None:
    """Raise :class:`~fewshot.errors.FewShotError` naming the extra to install if tracker ``name`` is missing.

    Example:
        >>> check_tracker("tensorboard")  # raises FewShotError naming the extra when tensorboard is missing
    """
    if importlib.util.find_spec(PACKAGES[name]) is None:
        raise FewShotError(f"--tracker {name} needs the {PACKAGES[name]} package: pip install 'fewshot[{name}]' "
                           f"(or pip install {PACKAGES[name]}), or leave --tracker out")


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record as ``EVENT/KEY`` names (not its step, flags or missing values).

    Example:
        >>> scalars({"event": "train", "step": 5, "loss": 0.5})
        {'train/loss': 0.5}
    """
    return {f"{record['event']}/{key}": float(value) for key, value in record.items()
            if key not in ("event", "step") and isinstance(value, int | float) and not isinstance(value, bool)}


class Tracker(ABC):
    """Where the trainer sends each metrics record; :meth:`close` at the end of training.

    Example:
        >>> tracker = open_tracker("tensorboard", Path("runs/proto"), config)
        >>> tracker.log({"event": "train", "step": 5, "loss": 0.5})
        >>> tracker.close()
    """

    @abstractmethod
    def log(self, record: dict[str, Any]) -> None:
        """Send one record of ``metrics.jsonl``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and close the tracker's files."""


class TensorBoardTracker(Tracker):
    """TensorBoard event files in ``RUN/tensorboard`` (``tensorboard --logdir RUN``).

    Example:
        >>> tracker = TensorBoardTracker(Path("runs/proto"), config)
    """

    def __init__(self, run_dir: Path, config: RunConfig) -> None:
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))
        self.writer.add_text("config", "    " + yaml.safe_dump(config.to_dict(), sort_keys=False).replace("\n", "\n    "))

    def log(self, record: dict[str, Any]) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, record["step"])

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """A Weights & Biases run under ``RUN/wandb``; its id is kept in ``RUN/wandb-id.txt``, so a resumed
    training continues the same W&B run.

    Example:
        >>> tracker = WandbTracker(Path("runs/proto"), config)  # WANDB_MODE=offline works
    """

    def __init__(self, run_dir: Path, config: RunConfig) -> None:
        import wandb

        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
        atomic_write_text(id_file, run_id + "\n")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "fewshot"), id=run_id, resume="allow",
                              name=run_dir.name, dir=str(run_dir), config=config.to_dict(),
                              settings=wandb.Settings(console="off"))

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()


def open_tracker(name: str, run_dir: Path, config: RunConfig) -> Tracker:
    """The tracker ``name`` (``tensorboard`` or ``wandb``) of the run in ``run_dir``.

    Example:
        >>> tracker = open_tracker("wandb", Path("runs/proto"), config)
    """
    check_tracker(name)
    return {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}[name](run_dir, config)
