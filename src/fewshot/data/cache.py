"""On-disk cache of decoded image sets, so each source file is decoded once.

An entry is three files in the cache directory: ``<kind>-<key>.images.npy`` (uint8
``[n, c, h, w]``), ``<kind>-<key>.labels.npy`` (int64 ``[n]``) and ``<kind>-<key>.json``
(class names), each written atomically, the JSON last. Arrays are read back with
``allow_pickle=False``. The key hashes the identity of the source files (resolved path,
size, modification time in ns), the decoding parameters (image size, channels) and
:data:`FORMAT_VERSION`, so a changed source or setting never reads a stale entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot.data.dataset import ImageDataset
from fewshot.files import atomic_write, atomic_write_json

FORMAT_VERSION = 2
"""Part of every key: bump it whenever decoding changes (filters, inversion, layout), so old entries are ignored."""


def cache_dir() -> Path:
    """``$FEWSHOT_CACHE`` if set, else ``~/.cache/fewshot``."""
    env = os.environ.get("FEWSHOT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fewshot"


def file_identity(path: Path) -> list[Any]:
    """``[resolved path, size, mtime_ns]`` of one source file."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def tree_identity(root: Path, files: Sequence[Path]) -> list[Any]:
    """The identity of many files under ``root``: its resolved path, then ``[relative path, size, mtime_ns]`` each."""
    entries = []
    for f in files:
        stat = f.stat()
        entries.append([f.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns])
    return [str(root.resolve()), entries]


def cache_key(kind: str, identity: Any, **params: Any) -> str:
    """A file-name-safe key: ``kind`` plus a hash of the source identity, parameters and format version."""
    payload = json.dumps({"version": FORMAT_VERSION, "kind": kind, "source": identity, "params": params},
                         sort_keys=True)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:24]}"


def cached_dataset(key: str, build: Callable[[], ImageDataset]) -> ImageDataset:
    """The dataset stored under ``key``, or ``build()``'s result, stored for next time.

    Example:
        >>> key = cache_key("mnist", [file_identity(p) for p in files], image_size=28, channels=1)
        >>> dataset = cached_dataset(key, lambda: decode_mnist(files))
    """
    base = cache_dir() / key
    dataset = _load(base)
    if dataset is None:
        dataset = build()
        _save(base, dataset)
    return dataset


def _paths(base: Path) -> tuple[Path, Path, Path]:
    return (base.with_name(base.name + ".images.npy"), base.with_name(base.name + ".labels.npy"),
            base.with_name(base.name + ".json"))


def _load(base: Path) -> ImageDataset | None:
    images_path, labels_path, meta_path = _paths(base)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        images = np.load(images_path, allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False)
        if (meta["version"] != FORMAT_VERSION or images.dtype != np.uint8 or labels.dtype != np.int64
                or list(images.shape) != meta["shape"]):
            return None
        return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), meta["class_names"], meta["name"])
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        return None


def _save(base: Path, dataset: ImageDataset) -> None:
    images_path, labels_path, meta_path = _paths(base)
    try:
        for path, array in ((images_path, dataset.images.numpy()), (labels_path, dataset.labels.numpy())):
            atomic_write(path, lambda tmp, array=array: _write_npy(tmp, array))
        atomic_write_json(meta_path, {
            "version": FORMAT_VERSION,
            "shape": list(dataset.images.shape),
            "class_names": dataset.class_names,
            "name": dataset.name,
        })
    except OSError as error:
        warnings.warn(f"could not write the decoded-image cache in {base.parent} ({error.strerror}); "
                      f"images will be decoded again next time. Set FEWSHOT_CACHE to a writable folder",
                      stacklevel=3)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
