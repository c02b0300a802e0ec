"""Trained runs and image files for the gallery tests: a small image folder and ProtoNet / Siamese runs on it."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from synthetic import make_dataset

from fewshot.cli.main import main

N_CLASSES, PER_CLASS, SIZE = 16, 8, 16
TRAIN_SPLIT = "0-9/10-15"  # the runs train on classes 0-9; 10-15 are never seen


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_shapes(root: Path) -> Path:
    """``root/classNN/i.png``: dark patterns on a light background (so the gallery inverts nothing: not strokes)."""
    data = make_dataset(n_classes=N_CLASSES, per_class=PER_CLASS, size=SIZE, seed=5)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = root / f"class{int(label):02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.png").write_bytes(png(image[0].numpy()))
    return root


def train_run(folder: Path, out: Path, method: str = "protonet", *extra: str, steps: int = 40) -> Path:
    code = main(["train", method, "--dataset", "folder", "--data-dir", str(folder), "--split", TRAIN_SPLIT,
                 "--image-size", str(SIZE), "--steps", str(steps), "--val-every", "0", "--out", str(out),
                 "--no-progress", *extra])
    assert code == 0
    return out


def class_images(folder: Path, index: int) -> list[Path]:
    return sorted((folder / f"class{index:02d}").glob("*.png"))
