"""The one trainer shared by every method, its config and its checkpoints."""
from fewshot.training.config import RunConfig, resolve_config
from fewshot.training.trainer import Trainer

__all__ = ["RunConfig", "Trainer", "resolve_config"]
