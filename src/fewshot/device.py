"""Choosing the torch device from ``auto|cpu|cuda``."""
from __future__ import annotations

import torch

from fewshot.errors import FewShotError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device for ``name``: ``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FewShotError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    raise FewShotError(f"unknown device {name!r}; use one of: {', '.join(DEVICE_CHOICES)}")
