"""Decode PNG/JPEG bytes to square uint8 arrays with Pillow."""
from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from fewshot.errors import FewShotError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MODES = {1: "L", 3: "RGB"}


def decode_image(data: bytes, size: int, channels: int = 1, source: str = "image") -> np.ndarray:
    """Decode one encoded image to a uint8 array ``[channels, size, size]``.

    The image is converted to grayscale (``channels=1``) or RGB (``channels=3``) and
    resized to ``size x size`` with antialiasing (area averaging when shrinking, Lanczos
    when enlarging; the aspect ratio is not kept).
    ``source`` names the image in the error raised for a corrupt or truncated file.

    Example:
        >>> decode_image(Path("a.png").read_bytes(), size=28).shape
        (1, 28, 28)
    """
    if channels not in _MODES:
        raise FewShotError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "JPEG":
                image = ImageOps.exif_transpose(image)
            image = image.convert(_MODES[channels])
            if image.size != (size, size):
                image = image.resize((size, size), _filter(image.size, size))
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise FewShotError(
            f"cannot decode image {source}: {error}; the file is corrupt, truncated or not a PNG/JPEG. "
            f"Replace or delete it"
        ) from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def decode_images(
    items: Iterable[tuple[str, bytes]],
    count: int,
    size: int,
    channels: int = 1,
    *,
    progress: bool = False,
    desc: str = "decoding images",
) -> np.ndarray:
    """Decode ``count`` ``(source name, encoded bytes)`` pairs into one uint8 array ``[count, channels, size, size]``.

    Example:
        >>> paths = [Path("a.png"), Path("b.jpg"), Path("c.png")]
        >>> decode_images(read_files(paths), len(paths), size=28).shape
        (3, 1, 28, 28)
    """
    out = np.empty((count, channels, size, size), dtype=np.uint8)
    with tqdm(total=count, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for i, (source, data) in enumerate(items):
            out[i] = decode_image(data, size, channels, source)
            bar.update()
    return out


def read_image(path: str | os.PathLike, size: int, channels: int = 1) -> np.ndarray:
    """Read and decode one image file; see :func:`decode_image`."""
    return decode_image(read_bytes(path), size, channels, source=str(path))


def read_files(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    """``(path, contents)`` of each file, the input :func:`decode_images` takes."""
    for path in paths:
        yield str(path), read_bytes(path)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The contents of a file, or a :class:`FewShotError` naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise FewShotError(f"cannot read {path}: {error.strerror}; check the file and its permissions") from None


def resize_array(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 ``[h, w]`` array to ``[size, size]``, antialiased like :func:`decode_image`."""
    return np.asarray(Image.fromarray(image).resize((size, size), _filter(image.shape[::-1], size)), dtype=np.uint8)


def _filter(source_size: tuple[int, int], size: int) -> Image.Resampling:
    """Area averaging (box) when shrinking, Lanczos when enlarging: both antialiased."""
    return Image.BOX if min(source_size) >= size else Image.LANCZOS


def is_image_name(name: str) -> bool:
    """Whether a file name has a PNG/JPEG suffix (case-insensitive) and is not hidden."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)
