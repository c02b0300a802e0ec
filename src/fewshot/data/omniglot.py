"""Omniglot (Lake, Salakhutdinov and Tenenbaum 2015): 1,623 characters from 50 alphabets, 20 drawings each.

The data folder holds ``images_background.zip`` (30 alphabets, 964 characters) and
``images_evaluation.zip`` (20 alphabets, 659 characters), or the same trees extracted
(``images_background/<Alphabet>/characterNN/*.png``), and, for the Vinyals split,
``splits/vinyals/{train,val,test,trainval}.txt``. Class names are ``"<Alphabet>/characterNN"``.

Two splits:

- ``"lake"``: background alphabets train, evaluation alphabets test, as in Lake et al.
  and Koch et al.; the background alphabets in :data:`LAKE_VAL_ALPHABETS` are held out
  as validation ("trainval" is the whole background set).
- ``"vinyals"``: the class lists of Vinyals et al. (2016), as published by Snell et al.
  (2017): lines ``Alphabet/characterNN/rotDDD``, each rotation its own class.
"""
from __future__ import annotations

import re
import zlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from fewshot.data.cache import cache_key, cached_dataset, file_identity, tree_identity
from fewshot.data.dataset import ImageDataset
from fewshot.data.download import Resource, ensure_files
from fewshot.data.imageio import decode_images, is_image_name, read_files
from fewshot.errors import FewShotError

SPLITS = ("lake", "vinyals")
DEFAULT_SPLIT = "lake"
LAKE_VAL_ALPHABETS = ("Bengali", "Futurama", "Hebrew", "Korean", "Tagalog")
"""Background alphabets held out as "val" in the lake split: 151 of the 964 background characters."""

_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
BACKGROUND = Resource("images_background.zip", (_URL + "images_background.zip",),
                      md5="68d2efa1b9178cc56df9314c21c6e718")
EVALUATION = Resource("images_evaluation.zip", (_URL + "images_evaluation.zip",),
                      md5="6b91aef0f799c5bb55b94e3f2daec811")
_SNELL = ("Snell et al.'s prototypical-networks repository (https://github.com/jakesnell/prototypical-networks), "
          "folder data/omniglot/splits/vinyals")
VINYALS_SPLITS = tuple(Resource(f"splits/vinyals/{name}.txt", hint=_SNELL)
                       for name in ("train", "val", "test", "trainval"))
_ROTATION = re.compile(r"rot(\d{3})")

Plan = dict[str, list[tuple[int, int, str]]]
"""Split name -> classes as ``(class index in the full set, quarter turns, class name)``."""


def load(directory: Path, split: str | None = None, *, image_size: int = 28, download: bool = True,
         progress: bool = True) -> tuple[ImageDataset, Plan]:
    """All Omniglot images (background then evaluation classes) and the chosen split's plan."""
    split = split or DEFAULT_SPLIT
    if split not in SPLITS:
        raise FewShotError(f"unknown omniglot split {split!r}; valid splits: {', '.join(SPLITS)}")
    needed = [r for r in (BACKGROUND, EVALUATION) if not _extracted(directory, r).is_dir()]
    if split == "vinyals":
        needed += VINYALS_SPLITS
    ensure_files(directory, needed, dataset=f"omniglot ({split} split)", download=download, progress=progress)
    background = load_images(_source(directory, BACKGROUND), image_size, progress)
    evaluation = load_images(_source(directory, EVALUATION), image_size, progress)
    full = ImageDataset(
        torch.cat([background.images, evaluation.images]),
        torch.cat([background.labels, evaluation.labels + background.num_classes]),
        background.class_names + evaluation.class_names,
        "omniglot",
    )
    if split == "lake":
        return full, _lake_plan(background.class_names, evaluation.class_names)
    return full, _vinyals_plan(directory, full.class_names)


def load_images(source: Path, image_size: int = 28, progress: bool = False) -> ImageDataset:
    """The images of one Omniglot zip or extracted folder, inverted to white on black, cached.

    Example:
        >>> load_images(Path("data/omniglot/images_evaluation.zip")).num_classes
        659
    """
    if source.is_dir():
        files = sorted(p for p in source.glob("*/*/*") if is_image_name(p.name))
        key = cache_key("omniglot", tree_identity(source, files), image_size=image_size, channels=1)
        return cached_dataset(key, lambda: _decode_folder(source, files, image_size, progress))
    key = cache_key("omniglot", file_identity(source), image_size=image_size, channels=1)
    return cached_dataset(key, lambda: _decode_zip(source, image_size, progress))


def describe(directory: Path) -> dict:
    """Which Omniglot files are present under ``directory`` and which are missing."""
    found, missing = [], []
    for resource in (BACKGROUND, EVALUATION):
        tree = _extracted(directory, resource)
        if tree.is_dir():
            found.append(f"{tree.name}/")
        elif (directory / resource.path).exists():
            found.append(resource.path)
        else:
            missing.append({"file": resource.path, "urls": list(resource.urls), "note": ""})
    for resource in VINYALS_SPLITS:
        if (directory / resource.path).exists():
            found.append(resource.path)
        else:
            missing.append({"file": resource.path, "urls": [],
                            "note": f"needed for split 'vinyals'; get it from {resource.hint}"})
    return {"name": "omniglot", "directory": str(directory), "found": found, "missing": missing,
            "splits": list(SPLITS)}


def _extracted(directory: Path, resource: Resource) -> Path:
    return directory / resource.path.removesuffix(".zip")


def _source(directory: Path, resource: Resource) -> Path:
    tree = _extracted(directory, resource)
    return tree if tree.is_dir() else directory / resource.path


def _classes(members: list[str], source: Path) -> list[str]:
    """``"<Alphabet>/characterNN"`` of each image path, checked before anything is decoded."""
    if not members:
        raise FewShotError(f"{source} holds no PNG images; use the official Omniglot archive")
    classes = []
    for member in members:
        parts = member.split("/")
        if len(parts) < 3:
            raise FewShotError(
                f"{source}: image {member!r} is not in an <Alphabet>/characterNN/ folder; "
                f"use the official Omniglot archive layout"
            )
        classes.append(f"{parts[-3]}/{parts[-2]}")
    return classes


def _dataset(images: np.ndarray, classes: list[str], source: Path) -> ImageDataset:
    names = sorted(set(classes))
    index = {n: i for i, n in enumerate(names)}
    labels = torch.tensor([index[c] for c in classes], dtype=torch.long)
    return ImageDataset(torch.from_numpy(255 - images), labels, names, f"omniglot/{source.stem}")


def _decode_zip(path: Path, image_size: int, progress: bool) -> ImageDataset:
    def corrupt(error: Exception) -> FewShotError:
        return FewShotError(
            f"{path} is not a readable zip archive ({error}): it is corrupt or truncated. "
            f"Delete it and download it again from {_URL}{path.name}"
        )

    try:
        with zipfile.ZipFile(path) as archive:
            infos = sorted((i for i in archive.infolist() if not i.is_dir() and is_image_name(i.filename)),
                           key=lambda i: i.filename)
            classes = _classes([i.filename for i in infos], path)

            def members():
                for info in infos:
                    try:
                        data = archive.read(info)
                    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                        raise corrupt(error) from None
                    yield f"{path}:{info.filename}", data

            images = decode_images(members(), len(infos), image_size, progress=progress,
                                   desc=f"decoding {path.name}")
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise corrupt(error) from None
    return _dataset(images, classes, path)


def _decode_folder(root: Path, files: list[Path], image_size: int, progress: bool) -> ImageDataset:
    classes = _classes([f.relative_to(root).as_posix() for f in files], root)
    images = decode_images(read_files(files), len(files), image_size, progress=progress, desc=f"decoding {root.name}")
    return _dataset(images, classes, root)


def _lake_plan(background: list[str], evaluation: list[str]) -> Plan:
    held_out = set(LAKE_VAL_ALPHABETS)
    plan: Plan = {"train": [], "val": [], "test": [], "trainval": []}
    for i, name in enumerate(background):
        plan["val" if name.split("/")[0] in held_out else "train"].append((i, 0, name))
        plan["trainval"].append((i, 0, name))
    plan["test"] = [(len(background) + i, 0, name) for i, name in enumerate(evaluation)]
    empty = [s for s, classes in plan.items() if not classes]
    if empty:
        raise FewShotError(
            f"omniglot lake split: no classes for {', '.join(empty)}; the background set must hold some of the "
            f"validation alphabets {', '.join(LAKE_VAL_ALPHABETS)} and others, and the evaluation set must not be "
            f"empty. Use the official images_background.zip and images_evaluation.zip"
        )
    return plan


def _vinyals_plan(directory: Path, class_names: list[str]) -> Plan:
    index = {n: i for i, n in enumerate(class_names)}
    plan: Plan = {}
    for resource in VINYALS_SPLITS:
        path = directory / resource.path
        classes, seen = [], set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            base, _, rotation = line.rpartition("/")
            match = _ROTATION.fullmatch(rotation)
            if not match or int(match[1]) % 90:
                problem = "does not end in /rot000, /rot090, /rot180 or /rot270"
            elif base not in index:
                problem = "is not a character of the Omniglot images"
            elif line in seen:
                problem = "is listed twice"
            else:
                seen.add(line)
                classes.append((index[base], int(match[1]) // 90 % 4, line))
                continue
            raise FewShotError(
                f"{path}, line {number}: {line!r} {problem}; the split files must list each "
                f"'Alphabet/characterNN/rotDDD' class of the official images once, as in {resource.hint}"
            )
        if not classes:
            raise FewShotError(f"{path} lists no classes; restore it from {resource.hint}")
        plan[path.stem] = classes
    return plan
