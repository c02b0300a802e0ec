"""Resumable training state, written atomically; loading never executes code."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from fewshot.errors import FewShotError
from fewshot.files import atomic_write, atomic_write_bytes


def save_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Write a module's weights as safetensors, atomically.

    Example:
        >>> save_weights(method, "runs/proto/model.safetensors")
    """
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint (tensors, numbers, strings, lists and dicts only), atomically.

    Example:
        >>> save_checkpoint("runs/proto/checkpoint.pt", {"step": 500, "model": method.state_dict()})
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> bytes:
    """The bytes of the checkpoint at ``path``; a missing one says there is nothing to resume.

    Example:
        >>> state = parse_checkpoint(read_checkpoint("runs/proto/checkpoint.pt"), "runs/proto/checkpoint.pt")
    """
    path = Path(path)
    if not path.exists():
        raise FewShotError(f"no checkpoint at {path}: nothing to resume; start the run without --resume")
    return path.read_bytes()


def parse_checkpoint(data: bytes, source: str | Path) -> dict[str, Any]:
    """A checkpoint from its bytes with ``weights_only=True``: a file that would run code is refused.

    Example:
        >>> parse_checkpoint(data, "runs/proto/checkpoint.pt")["step"]
    """
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or unsafe files
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise FewShotError(f"checkpoint {source} cannot be read ({type(e).__name__}: {first_line}); "
                           "start the run again with --overwrite") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read the checkpoint at ``path`` (see :func:`parse_checkpoint`).

    Example:
        >>> load_checkpoint("runs/proto/checkpoint.pt")["step"]
    """
    return parse_checkpoint(read_checkpoint(path), path)
