"""A gallery model whose embedding of an image is its own pixels, so every distance is known without training."""
from __future__ import annotations

import numpy as np
from safetensors.torch import save

from fewshot.gallery import GalleryModel
from fewshot.runs import build_method
from fewshot.training.config import RunConfig

SIZE = 4


def flat_protonet(size: int = SIZE, method: str = "protonet", dataset: str = "folder", **options) -> GalleryModel:
    """ProtoNet (or ``method``) over the flatten encoder: an embedding is the image's pixels / 255."""
    config = RunConfig(method=method, encoder="flatten", image_size=size, dataset=dataset, options=options)
    return GalleryModel(config, save(build_method(config).state_dict()), "runs/pixels")


def image(value: int, corner: int = 0) -> np.ndarray:
    """A model input: every pixel ``value``, but the first ``corner`` pixels 255."""
    pixels = np.full((1, SIZE, SIZE), value, np.uint8)
    pixels.reshape(-1)[:corner] = 255
    return pixels


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """ProtoNet's squared Euclidean distance between the embeddings of two model inputs."""
    return float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).sum() / 255 ** 2)
