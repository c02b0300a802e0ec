"""A run directory: its config, its model, its data. Used by the CLI, the gallery and the plots.

Its files are named in :mod:`fewshot.training.run_files` (and importable from here).
"""
from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.methods import METHODS, Method
from fewshot.nets import build_encoder
from fewshot.training.config import RunConfig, read_yaml
from fewshot.training.run_files import CHECKPOINT_FILE, CONFIG_FILE, EVALUATION_FILE, METRICS_FILE, MODEL_FILE

__all__ = ["CHECKPOINT_FILE", "CONFIG_FILE", "EVALUATION_FILE", "METRICS_FILE", "MODEL_FILE", "build_method",
           "config_yaml", "load_config", "load_data", "load_run", "load_weights", "training_set"]


def config_yaml(config: RunConfig) -> str:
    """The YAML text of ``config``, as a run directory's ``config.yaml`` holds it.

    Example:
        >>> print(config_yaml(load_config("runs/proto")))  # method: protonet ...
    """
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def build_method(config: RunConfig, image_shape: tuple[int, int, int] | None = None) -> Method:
    """The untrained method a config describes, with weights initialised from ``config.seed``.

    Example:
        >>> method = build_method(resolve_config("protonet", overrides={"dataset": "omniglot"}))
    """
    channels, size = (image_shape[0], image_shape[1]) if image_shape else (config.channels, config.image_size)
    torch.manual_seed(config.seed)
    encoder = build_encoder(config.encoder, in_channels=channels, image_size=size, **config.encoder_options)
    return METHODS.build(config.method, encoder=encoder, **config.options)


def load_config(run_dir: str | Path) -> RunConfig:
    """The config of the run in ``run_dir`` (its ``config.yaml``).

    Example:
        >>> load_config("runs/proto").method
        'protonet'
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FewShotError(f"run directory {run_dir} does not exist; train one with `fewshot train METHOD --out {run_dir}`")
    if not (run_dir / CONFIG_FILE).exists():
        raise FewShotError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}")
    return RunConfig.from_dict(read_yaml(run_dir / CONFIG_FILE), source=str(run_dir / CONFIG_FILE))


def load_weights(method: Method, path: str | Path, config: RunConfig) -> None:
    """Load safetensors weights into ``method``; a file of another method or config is refused clearly.

    Example:
        >>> method = build_method(config)
        >>> load_weights(method, "runs/proto/model.safetensors", config)
    """
    path = Path(path)
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise FewShotError(f"{path} not found: the run has no trained model yet (train it, or resume it)") from None
    except (SafetensorError, OSError) as e:
        raise FewShotError(f"{path} is not a readable safetensors file ({e}); retrain or restore it") from None
    method.check_state_dict(state)
    expected = method.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise FewShotError(
            f"{path} does not fit method {config.method!r} with encoder {config.encoder!r} and options "
            f"{config.options} ({detail}); it was saved by another method or configuration"
        )
    method.load_state_dict(state)


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[Method, RunConfig]:
    """The trained method of a run directory, in eval mode, and its config.

    Example:
        >>> model, config = load_run("runs/proto")
        >>> print(evaluate(model, load_splits("omniglot", "lake")["test"], n_way=20, k_shot=1))
    """
    config = load_config(run_dir)
    method = build_method(config)
    load_weights(method, Path(run_dir) / MODEL_FILE, config)
    return method.to(device).eval(), config


def training_set(config: RunConfig, data: dict[str, ImageDataset]) -> ImageDataset:
    """The partition a run trains on, with the new classes its config adds (rotations, then mirrors).

    Example:
        >>> train = training_set(config, load_data(config, ("train",)))
    """
    train_set = data[config.train_partition]
    if config.rotate_classes:
        train_set = train_set.with_rotated_classes()
    if config.mirror_classes:
        train_set = train_set.with_mirrored_classes()
    return train_set


def load_data(config: RunConfig, partitions: tuple[str, ...], progress: bool = True,
              download: bool = True) -> dict[str, ImageDataset]:
    """The partitions a run uses (e.g. ``("train", "val")``), as its config describes them.

    Asked for ``trainval`` and ``val`` together (a run that trains on both), it leaves ``val``
    out: its classes are training classes then, and validating on them would pick the model
    that best fits seen classes.
    Missing files are downloaded from the official sources unless ``download`` is False.

    Example:
        >>> data = load_data(load_config("runs/proto"), ("train", "val"))
        >>> sorted(data)
        ['train', 'val']
    """
    from fewshot.data.sources import load_splits

    splits = load_splits(
        config.dataset, config.split, data_dir=config.data_dir, image_size=config.image_size,
        channels=config.channels, download=download, progress=progress,
    )
    if "trainval" in partitions:
        partitions = tuple(p for p in partitions if p != "val")
    missing = [p for p in partitions if p not in splits and p != "val"]
    if missing:
        raise FewShotError(
            f"split {config.split!r} of {config.dataset} has no {', '.join(missing)} partition; "
            f"it has {', '.join(splits)}"
            + ("; a class split without '/' (like '0-9') is for evaluation only: to train, write train/test "
               "classes like '0-6/7-9'" if "train" in missing and "/" not in str(config.split) else "")
        )
    return {p: splits[p] for p in partitions if p in splits}
