"""Stored model inputs as small PNGs for people: dark strokes on light, enlarged."""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from fewshot.gallery import Gallery

SCALE = 3


def thumbnail_data_url(pixels: np.ndarray, gallery: Gallery) -> str:
    """A ``data:image/png;base64,...`` URL of a stored example (uint8 ``[c, s, s]``), as a person drew it."""
    image = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    if gallery.model.preprocessing.strokes:
        image = 255 - image  # the model sees bright strokes on dark; people drew dark on light
    picture = Image.fromarray(np.ascontiguousarray(image))
    picture = picture.resize((picture.width * SCALE, picture.height * SCALE), Image.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
