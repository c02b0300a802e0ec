"""MNIST (LeCun, Cortes and Burges) from its original IDX files, gzipped or not.

The data folder holds ``t10k-images-idx3-ubyte(.gz)`` and ``t10k-labels-idx1-ubyte(.gz)``
(10,000 digits) and, optionally, the ``train-*`` pair (60,000 digits), used together
with the test pair when present. Only the test pair is downloaded, so a downloaded copy
matches the 10,000-image copy the benchmarks use. Class names are ``"0"`` .. ``"9"``.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from fewshot.data.cache import cache_key, cached_dataset, file_identity
from fewshot.data.dataset import ImageDataset
from fewshot.data.download import Resource, ensure_files, missing_files_message
from fewshot.data.imageio import read_bytes, resize_array
from fewshot.errors import FewShotError

DEFAULT_SPLIT = "0-5/6-9"
CLASS_NAMES = [str(d) for d in range(10)]
_MIRRORS = ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")


def _resource(name: str, md5: str) -> Resource:
    return Resource(name, tuple(m + name for m in _MIRRORS), md5=md5)


TEST_FILES = (
    _resource("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    _resource("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
TRAIN_FILES = (
    _resource("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    _resource("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
)


def load(directory: Path, *, image_size: int = 28, download: bool = True, progress: bool = True) -> ImageDataset:
    """All MNIST digits found under ``directory`` (train pair, if any, then test pair), cached."""
    ensure_files(directory, [r for r in TEST_FILES if not _find(directory, r)], dataset="mnist",
                 download=download, progress=progress)
    pairs = [TEST_FILES]
    train_found = [r for r in TRAIN_FILES if _find(directory, r)]
    if len(train_found) == 1:
        missing = [r for r in TRAIN_FILES if r not in train_found]
        raise FewShotError(missing_files_message("mnist (train-* images and labels come in pairs)", directory, missing))
    if train_found:
        pairs.insert(0, TRAIN_FILES)
    files = [_find(directory, r) for pair in pairs for r in pair]
    key = cache_key("mnist", [file_identity(f) for f in files], image_size=image_size, channels=1)
    return cached_dataset(key, lambda: _decode(files, image_size))


def describe(directory: Path) -> dict:
    """Which MNIST files are present under ``directory`` and which are missing."""
    found, missing = [], []
    for resource in TEST_FILES + TRAIN_FILES:
        path = _find(directory, resource)
        if path:
            found.append(path.name)
        else:
            note = "" if resource in TEST_FILES else "optional: the 60,000 training digits, used when present"
            missing.append({"file": resource.path, "urls": list(resource.urls), "note": note})
    return {"name": "mnist", "directory": str(directory), "found": found, "missing": missing,
            "splits": [f"class split over digits 0-9, default {DEFAULT_SPLIT!r}"]}


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``dims`` dimensions (gzipped or not), validated.

    Example:
        >>> read_idx(Path("mnist/t10k-labels-idx1-ubyte.gz"), 1).shape
        (10000,)
    """
    raw = read_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise FewShotError(f"{path} is a corrupt or truncated gzip file ({error}); delete it and get it again") \
                from None
    header = 4 + 4 * dims
    if len(raw) < header or raw[:4] != bytes([0, 0, 8, dims]):
        raise FewShotError(
            f"{path} is not an IDX file of unsigned bytes with {dims} dimension(s) "
            f"(its magic number is {raw[:4].hex() or 'missing'}, expected {bytes([0, 0, 8, dims]).hex()}); "
            f"use the original MNIST files"
        )
    shape = struct.unpack(f">{dims}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise FewShotError(
            f"{path} is truncated or corrupt: its header announces {shape} = {size} bytes of data but it holds "
            f"{len(raw) - header}; delete it and get it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, resource: Resource) -> Path | None:
    for name in (resource.path, resource.path.removesuffix(".gz")):
        if (directory / name).is_file():
            return directory / name
    return None


def _decode(files: list[Path], image_size: int) -> ImageDataset:
    images, labels = [], []
    for image_file, label_file in zip(files[::2], files[1::2]):
        pixels, digits = read_idx(image_file, 3), read_idx(label_file, 1)
        if len(pixels) != len(digits):
            raise FewShotError(f"{image_file} holds {len(pixels)} images but {label_file} holds {len(digits)} "
                               f"labels; use a matching pair of MNIST files")
        if digits.size and digits.max() > 9:
            raise FewShotError(f"{label_file} holds label {digits.max()}; MNIST labels are digits 0-9")
        if not len(pixels):
            raise FewShotError(f"{image_file} holds no images; use the original MNIST files")
        if pixels.shape[1:] != (image_size, image_size):
            pixels = np.stack([resize_array(p, image_size) for p in pixels])
        images.append(pixels)
        labels.append(digits)
    return ImageDataset(torch.from_numpy(np.concatenate(images)[:, None].copy()),
                        torch.from_numpy(np.concatenate(labels).astype(np.int64)), CLASS_NAMES, "mnist")
