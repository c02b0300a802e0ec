"""Any folder of images with one sub-folder per class.

``root/<class>/*.png|*.jpg|*.jpeg``, images of any size, decoded to grayscale
(``channels=1``) or RGB (``channels=3``) and resized to a square. Class names are the
sub-folder names, sorted; hidden files and folders are skipped.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fewshot.data.cache import cache_key, cached_dataset, tree_identity
from fewshot.data.dataset import ImageDataset
from fewshot.data.imageio import decode_images, is_image_name, read_files
from fewshot.errors import FewShotError

_LAYOUT = "a folder with one sub-folder of PNG/JPEG images per class"


def load(root: Path, *, image_size: int = 28, channels: int = 1, progress: bool = True) -> ImageDataset:
    """All images under ``root``, one class per sub-folder, cached.

    Example:
        >>> load(Path("my_photos"), image_size=84, channels=3).class_names
        ['cat', 'dog', 'fox']
    """
    classes = class_files(root)
    files = [f for _, paths in classes for f in paths]
    key = cache_key("folder", tree_identity(root, files), image_size=image_size, channels=channels)

    def build() -> ImageDataset:
        images = decode_images(read_files(files), len(files), image_size, channels, progress=progress,
                               desc=f"decoding {root.name}")
        labels = torch.cat([torch.full((len(paths),), c, dtype=torch.long) for c, (_, paths) in enumerate(classes)])
        return ImageDataset(torch.from_numpy(images), labels, [name for name, _ in classes], f"folder/{root.name}")

    return cached_dataset(key, build)


def class_files(root: Path) -> list[tuple[str, list[Path]]]:
    """``(class name, image files)`` for each class sub-folder of ``root``, sorted by name."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise FewShotError(f"folder dataset: {root} {what}; pass --data-dir pointing at {_LAYOUT}")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise FewShotError(f"folder dataset: {root} has no sub-folders; it must be {_LAYOUT}")
    classes = [(d.name, sorted(f for f in d.iterdir() if f.is_file() and is_image_name(f.name))) for d in folders]
    empty = [name for name, files in classes if not files]
    if empty:
        raise FewShotError(
            f"folder dataset: the class folder(s) {', '.join(empty)} in {root} hold no PNG/JPEG images; "
            f"add images or remove those folders"
        )
    return classes


def describe(root: Path | None) -> dict:
    """The class folders found under ``root`` (the folder data set downloads nothing)."""
    info = {"name": "folder", "directory": str(root) if root else "", "found": [], "missing": [],
            "splits": ["class split over the sorted class folders, default 60% train / 20% val / 20% test"]}
    if root is None:
        info["note"] = f"give --data-dir pointing at {_LAYOUT}"
    elif root.is_dir():
        folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        info["found"] = [f"class folder {name}/" for name in folders]
    else:
        info["note"] = f"{root} does not exist; it must be {_LAYOUT}"
    return info
