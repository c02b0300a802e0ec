"""Images as a gallery's model sees them: decoded, converted, resized, strokes bright on dark.

A gallery stores each example as its model's input (uint8 ``[channels, size, size]``), so
that it can be embedded again by another model (:meth:`fewshot.gallery.Gallery.reembed`).
Every conversion made on the way is reported, so an answer can say what was done.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from fewshot.data.imageio import decode_image
from fewshot.errors import FewShotError

#: Datasets of strokes (drawings, digits): their models see bright strokes on a dark background.
STROKE_DATASETS = ("omniglot", "mnist")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
#: Larger images are refused before decoding (decompression bombs): 64 megapixels.
MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Preprocessing:
    """How an encoded image becomes a model input: its size, channels, and whether it is a drawing.

    ``strokes``: the model was trained on bright strokes on dark (Omniglot, MNIST); an image with a
    light background (ink on paper) is inverted to match.
    """

    size: int
    channels: int
    strokes: bool

    def to_dict(self) -> dict:
        return {"size": self.size, "channels": self.channels, "strokes": self.strokes}


@dataclass
class PreparedImage:
    """A model input ``pixels`` (uint8 ``[c, s, s]``) and the conversions made to get it."""

    pixels: np.ndarray
    source: str
    notes: list[str] = field(default_factory=list)


def prepare_image(data: bytes, preprocessing: Preprocessing, source: str = "image") -> PreparedImage:
    """Decode ``data`` (PNG or JPEG bytes) into the model's input, noting each conversion.

    Raises :class:`FewShotError` naming ``source`` for a corrupt, truncated or empty file.

    Example:
        >>> prepare_image(Path("a.png").read_bytes(), Preprocessing(28, 1, strokes=True)).pixels.shape
        (1, 28, 28)
    """
    if not data:
        raise FewShotError(f"{source} is empty (0 bytes); pass a PNG or JPEG image")
    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode, (width, height) = image.mode, image.size
            transparent = "transparency" in image.info or (
                mode in ("RGBA", "LA", "PA") and image.getchannel("A").getextrema()[0] < 255)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        mode, transparent, width, height = "", False, 0, 0  # decode_image raises the error that names the file
    if width * height > MAX_PIXELS:
        raise FewShotError(f"{source} is {width} x {height} pixels, over the limit of {MAX_PIXELS:,}; "
                           f"send a smaller image (the model reads {preprocessing.size} x {preprocessing.size})")
    if transparent:
        data = _on_white(data)
        notes.append("transparent background drawn on white")
    gray = mode in _GRAY_MODES
    if preprocessing.channels == 1 and mode and not gray:
        notes.append(f"converted {mode} to grayscale: the model reads grayscale images")
    elif preprocessing.channels == 3 and gray:
        notes.append(f"converted grayscale ({mode}) to RGB: the model reads RGB images")
    pixels = decode_image(data, preprocessing.size, preprocessing.channels, source)
    if preprocessing.strokes and _light_background(pixels):
        pixels = 255 - pixels
        notes.append("inverted to bright strokes on dark, as the model was trained")
    return PreparedImage(np.ascontiguousarray(pixels), source, notes)


def _on_white(data: bytes) -> bytes:
    """The image composited onto white, re-encoded as PNG; unreadable data is returned as it is, for
    :func:`decode_image` to name in its error."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgba = image.convert("RGBA")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return data
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    out = io.BytesIO()
    flat.save(out, format="PNG")
    return out.getvalue()


def _light_background(pixels: np.ndarray) -> bool:
    """Whether the border of an image (its background, in a drawing) is mostly light."""
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], axis=None)
    return float(np.median(border)) > 127
