"""Atomic file writes: a crash or a kill never leaves a half-written file."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``.

    The rename is atomic on POSIX, so readers see either the old file or the new one.

    Example:
        >>> atomic_write("weights.npy", lambda tmp: np.save(tmp, array))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Example:
        >>> atomic_write_bytes("model.safetensors", data)
    """
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically.

    Example:
        >>> atomic_write_text("runs/proto/config.yaml", config_yaml(config))
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented JSON with sorted keys, atomically.

    Example:
        >>> atomic_write_json("runs/proto/evaluation.json", {"5w1s": 98.5})
    """
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
