"""Small synthetic image sets for tests: each class a random stroke pattern, each image a noisy, shifted copy."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from fewshot.data.dataset import ImageDataset


def make_dataset(n_classes: int = 12, per_class: int = 10, size: int = 28, seed: int = 0,
                 noise: float = 0.35, name: str = "synthetic") -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    patterns = (torch.rand(n_classes, 1, size // 4, size // 4, generator=g) > 0.6).float()
    patterns = torch.nn.functional.interpolate(patterns, size=(size, size), mode="nearest")
    images = patterns.repeat_interleave(per_class, 0)
    shifts = torch.randint(-2, 3, (len(images), 2), generator=g)
    images = torch.stack([torch.roll(im, tuple(s.tolist()), dims=(1, 2)) for im, s in zip(images, shifts)])
    images = (images + noise * torch.randn(images.shape, generator=g)).clamp(0, 1)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return ImageDataset((images * 255).round().to(torch.uint8), labels, [f"c{i}" for i in range(n_classes)], name)


def write_folder(data: ImageDataset, root: Path) -> Path:
    """``data`` as a ``--dataset folder`` tree under ``root``: one sub-folder of PNG images per class."""
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = root / f"class{int(label):02d}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{i}.png")
    return root
