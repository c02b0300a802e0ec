"""The run configuration: one flat record of everything a training run depends on.

Values come from, in increasing priority: the defaults below, a YAML file under
``configs/`` (the paper's settings), and command-line flags. The resolved record is
saved as ``config.yaml`` in the run directory, so a run can be rebuilt and resumed.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fewshot.errors import FewShotError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# Fields a resumed run may change: they do not alter the episodes or the updates.
# episodes_per_step is checked against the checkpoint by the trainer, which names both counts.
RESUMABLE_CHANGES = frozenset({"steps", "time_limit", "device", "threads", "data_dir", "val_every",
                               "checkpoint_every", "compile", "tracker", "episodes_per_step"})
TRACKERS = ("tensorboard", "wandb")
LR_SCHEDULES = ("step", "cosine")


def _opt(default: Any, help: str) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class RunConfig:
    """Everything a training run depends on. See ``configs/*.yaml`` for the papers' values.

    Example:
        >>> config = RunConfig(method="protonet", dataset="omniglot", steps=100)
        >>> config.encoder
        'conv4'
    """

    method: str = _opt("protonet", "few-shot method")
    options: dict = _opt({}, "the method's own options (its __init__ keyword arguments)")
    encoder: str = _opt("conv4", "encoder name from the registry (default: the method's own, e.g. conv4)")
    encoder_options: dict = _opt({}, "encoder keyword options")
    dataset: str = _opt("omniglot", "dataset name: omniglot, mnist or folder")
    split: str | None = _opt(None, "dataset split (omniglot: lake or vinyals; mnist/folder: classes, e.g. 0-5/6-9)")
    data_dir: str | None = _opt(None, "data directory (default: $FEWSHOT_DATA, else the user cache)")
    image_size: int = _opt(28, "images are resized to this square size")
    channels: int = _opt(1, "image channels: 1 (grayscale) or 3 (RGB)")
    rotate_classes: bool = _opt(False, "add each training class rotated by 90, 180, 270 degrees as new classes")
    mirror_classes: bool = _opt(False, "add each training class (and rotation) mirrored left to right as a new class")
    train_partition: str = _opt("train", "partition to train on: train or trainval")
    steps: int = _opt(10_000, "training steps (episodes or batches)")
    optimizer: str = _opt("adam", "optimizer: adam or rmsprop")
    lr: float = _opt(1e-3, "learning rate")
    lr_step: int = _opt(2000, "multiply the learning rate by lr_gamma every lr_step steps")
    lr_gamma: float = _opt(0.5, "learning-rate decay factor")
    lr_schedule: str = _opt("step", "learning-rate schedule: step (lr_step, lr_gamma) or cosine (from lr down to 0 "
                                    "at the last of steps, as in MAML++)")
    weight_decay: float = _opt(0.0, "L2 weight decay")
    grad_clip: float | None = _opt(None, "clip the gradient norm to this value")
    ema_decay: float | None = _opt(None, "keep an exponential moving average of the weights with this decay "
                                         "(e.g. 0.9995); it is what is validated and saved")
    val_every: int = _opt(500, "validate every this many steps (0: never)")
    val_way: int = _opt(5, "classes per validation episode")
    val_shot: int = _opt(1, "support examples per class in validation episodes")
    val_query: int = _opt(15, "queries per class in validation episodes")
    val_episodes: int = _opt(500, "validation episodes")
    val_transductive: bool = _opt(False, "validate with batch norm on each batch's statistics, the queries on their "
                                         "own (transductive), for a model trained so (maml --transductive)")
    checkpoint_every: int = _opt(200, "write a resumable checkpoint every this many steps")
    time_limit: float | None = _opt(None, "stop training after this many minutes (wall clock)")
    seed: int = _opt(0, "random seed: episodes and initial weights")
    device: str = _opt("auto", "auto, cpu or cuda")
    threads: int | None = _opt(None, "CPU threads for torch (default: torch's choice, one per core)")
    bf16: bool = _opt(False, "bfloat16 autocast for the forward pass (CPUs with AVX-512 BF16, GPUs)")
    channels_last: bool = _opt(True, "channels-last memory format for conv encoders (same numbers, faster on CPUs)")
    compile: bool = _opt(False, "torch.compile the training loss: minutes to compile, then faster steps for "
                                "recurrent nets (mann); slower for conv encoders on a CPU")
    episodes_per_step: int = _opt(1, "average the loss of this many batches (episodes) before each optimiser "
                                     "step, in each process: P processes of N are one process of P x N")
    sync_bn: bool = _opt(False, "under torchrun on CUDA, batch norm statistics over the batches of all "
                                "processes (SyncBatchNorm); without it they are per process")
    tracker: str | None = _opt(None, "also send the metrics to an experiment tracker: tensorboard or wandb "
                                     "(pip install 'fewshot[tensorboard]' or 'fewshot[wandb]')")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FewShotError(f"{source}: unknown keys {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        for name, value in values.items():
            check_type(name, value, source)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.optimizer not in ("adam", "rmsprop"):
            raise FewShotError(f"optimizer must be adam or rmsprop, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise FewShotError(f"lr_schedule must be step or cosine, got {self.lr_schedule!r}")
        if self.train_partition not in ("train", "trainval"):
            raise FewShotError(f"train_partition must be train or trainval, got {self.train_partition!r}")
        if self.channels not in (1, 3):
            raise FewShotError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("steps", "image_size", "lr_step", "val_way", "val_shot", "val_episodes", "checkpoint_every",
                     "episodes_per_step"):
            if getattr(self, name) < 1:
                raise FewShotError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise FewShotError(f"lr must be positive, got {self.lr}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise FewShotError(f"ema_decay must be between 0 and 1 (e.g. 0.9995), got {self.ema_decay}; "
                               "leave it out to save the trained weights as they are")
        if self.tracker is not None and self.tracker not in TRACKERS:
            raise FewShotError(f"tracker must be one of {', '.join(TRACKERS)}, got {self.tracker!r}")


KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}


def check_type(name: str, value: Any, source: str = "config") -> None:
    """Raise :class:`FewShotError` unless ``value`` has the type of the :class:`RunConfig` field ``name``.

    Whole numbers pass for floats; booleans pass only for booleans (``True`` is not the number 1 here).

    Example:
        >>> check_type("steps", "100")  # raises FewShotError: config: steps must be a whole number, got '100' (str)
    """
    hint = typing.get_type_hints(RunConfig)[name]
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        if kind is type(None):
            continue
        if kind is bool and isinstance(value, bool):
            return
        if kind is not bool and not isinstance(value, bool) and (
                isinstance(value, kind) or (kind is float and isinstance(value, int))):
            return
    wanted = " or ".join(KINDS[k] for k in allowed if k is not type(None))
    optional = " (or left out)" if type(None) in allowed else ""
    hint_float = "; YAML reads 1e-3 as a string: write 0.001 or 1.0e-3" if float in allowed and _numeric(value) else ""
    raise FewShotError(f"{source}: {name} must be {wanted}{optional}, got {value!r} ({type(value).__name__})"
                       f"{hint_float}")


def _numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with a clear error if it is missing or malformed.

    Example:
        >>> read_yaml(default_config_path("protonet", "omniglot", "lake"))["method"]
        'protonet'
    """
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FewShotError(f"config file {path} not found; available: {', '.join(available_configs())}") from None
    except yaml.YAMLError as e:
        raise FewShotError(f"config file {path} is not valid YAML: {e}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise FewShotError(f"config file {path} must hold a mapping of keys to values")
    return values


def available_configs() -> list[str]:
    """The file names of the packaged configs (``configs/*.yaml``).

    Example:
        >>> "protonet_omniglot.yaml" in available_configs()
        True
    """
    return sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))


def default_config_path(method: str, dataset: str | None, split: str | None) -> Path | None:
    """The most specific of ``{method}_{dataset}_{split}.yaml``, ``{method}_{dataset}.yaml``, ``{method}.yaml``.

    Example:
        >>> default_config_path("protonet", "omniglot", "vinyals").name
        'protonet_omniglot_vinyals.yaml'
    """
    names = []
    if dataset and split:
        names.append(f"{method}_{dataset}_{split}.yaml")
    if dataset:
        names.append(f"{method}_{dataset}.yaml")
    names.append(f"{method}.yaml")
    for name in names:
        if (CONFIG_DIR / name).exists():
            return CONFIG_DIR / name
    return None


def resolve_config(
    method: str,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    option_overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults < YAML file (given, or the method's default for the dataset and split) < overrides.

    Example:
        >>> resolve_config("protonet", overrides={"dataset": "omniglot", "steps": 100}).steps
        100
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    dataset = overrides.get("dataset", RunConfig.dataset)
    path = config_file or default_config_path(method, dataset, overrides.get("split"))
    values: dict[str, Any] = read_yaml(path) if path else {}
    if values.get("method", method) != method:
        raise FewShotError(f"config file {path} is for method {values['method']!r}, not {method!r}")
    values["method"] = method
    values.update(overrides)
    if "encoder" not in values:
        from fewshot.methods import METHODS

        values["encoder"] = METHODS.get(method).default_encoder
    values["options"] = {**values.get("options", {}), **{k: v for k, v in (option_overrides or {}).items() if v is not None}}
    return RunConfig.from_dict(values, source=str(path or "config"))


def config_differences(saved: RunConfig, requested: RunConfig) -> list[str]:
    """Fields that differ between two configs, other than those a resume may change.

    Example:
        >>> config_differences(load_config("runs/proto"), requested)  # e.g. ['lr: 0.001 -> 0.01']
    """
    a, b = saved.to_dict(), requested.to_dict()
    return [f"{k}: {a[k]!r} (saved) vs {b[k]!r} (now)" for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]]
