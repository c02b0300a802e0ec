"""The data sets by name: where their files live, how they split into train/val/test.

Example:
    >>> splits = load_splits("omniglot", "lake", data_dir="data")
    >>> sorted(splits), splits["test"].num_classes
    (['test', 'train', 'trainval', 'val'], 659)
    >>> load_splits("mnist", "0-3/4-5/6-9", data_dir="data")["val"].class_names
    ['4', '5']
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fewshot.data import folder, mnist, omniglot
from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.registry import Registry

Plan = omniglot.Plan


@dataclass(frozen=True)
class DataSource:
    """A data set by name: ``load(data_dir, split, image_size, channels, download, progress)`` and ``describe``."""

    name: str
    summary: str
    load: Callable[..., dict[str, ImageDataset]]
    describe: Callable[[str | os.PathLike | None], dict]


DATASETS: Registry[DataSource] = Registry("dataset")
"""The data sets ``--dataset`` names: each one's files, download sources and splits.

Example:
    >>> sorted(DATASETS)
    ['folder', 'mnist', 'omniglot']
"""


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where data sets live: ``data_dir`` if given, else ``$FEWSHOT_DATA``, else ``~/.cache/fewshot/data``.

    Example:
        >>> data_root("/data")
        PosixPath('/data')
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("FEWSHOT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fewshot" / "data"


def load_splits(
    dataset: str,
    split: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 28,
    channels: int = 1,
    download: bool = True,
    progress: bool = True,
) -> dict[str, ImageDataset]:
    """The splits of a data set, as ``{"train", "val", "test", "trainval"} -> ImageDataset``.

    ``split`` is ``"lake"`` (default) or ``"vinyals"`` for Omniglot, and a class split
    such as ``"0-5/6-9"`` (train/test) or ``"0-3/4-5/6-9"`` (train/val/test) for MNIST
    and folders: numbers are positions in the sorted class list (for MNIST, the digits),
    ranges ``a-b`` and comma lists allowed, class names too. ``"val"`` is present only
    when the split defines it; ``"trainval"`` is train and val together (train alone when
    there is no val). Decoded images are cached (see :mod:`fewshot.data.cache`).

    Example:
        >>> load_splits("mnist", data_dir="data")["train"].class_names
        ['0', '1', '2', '3', '4', '5']
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 1 <= image_size <= 4096:
        raise FewShotError(f"image_size must be an integer number of pixels from 1 to 4096, got {image_size!r}")
    if channels not in (1, 3):
        raise FewShotError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    source = DATASETS.get(dataset)
    return source.load(data_dir, split, image_size=image_size, channels=channels, download=download,
                       progress=progress)


def describe_datasets(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """For each data set: ``name``, ``directory`` (where it looked), ``found`` files and ``missing`` ones.

    Each missing entry is ``{"file", "urls", "note"}``.

    Example:
        >>> [d["name"] for d in describe_datasets("data")]
        ['folder', 'mnist', 'omniglot']
    """
    return [{"summary": DATASETS.get(name).summary, **DATASETS.get(name).describe(data_dir)} for name in DATASETS]


def class_split(spec: str, class_names: list[str], dataset: str = "dataset") -> dict[str, list[int]]:
    """Parse a class split such as ``"0-5/6-9"`` or ``"0-3/4-5/6-9"`` into class indices per split.

    One part without a slash (``"0-9"``) is a test partition alone: for evaluating a model
    trained on another data set, such as Omniglot-trained models on all ten digits.

    Example:
        >>> class_split("0,2,4/1,3", [str(d) for d in range(10)])
        {'train': [0, 2, 4], 'test': [1, 3]}
        >>> class_split("0-9", [str(d) for d in range(10)])["test"]
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    parts = spec.split("/")
    if len(parts) > 3:
        raise FewShotError(
            f"{dataset}: split {spec!r} is not a class split; write train/test like '0-5/6-9', train/val/test "
            f"like '0-3/4-5/6-9' or test classes alone like '0-9' (positions in the sorted class list; ranges, "
            f"comma lists and class names allowed)"
        )
    names = {1: ("test",), 2: ("train", "test"), 3: ("train", "val", "test")}[len(parts)]
    index = {n: i for i, n in enumerate(class_names)}
    last = len(class_names) - 1
    result: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for name, part in zip(names, parts):
        ids: list[int] = []
        for token in filter(None, (t.strip() for t in part.split(","))):
            ids.extend(_class_token(token, index, last, spec, dataset))
        if not ids:
            raise FewShotError(f"{dataset}: split {spec!r} gives no classes to {name}; list at least one")
        for i in ids:
            if i in owner:
                where = "twice in" if owner[i] == name else f"in both {owner[i]} and"
                raise FewShotError(f"{dataset}: split {spec!r} puts class {class_names[i]!r} {where} {name}; "
                                   f"each class may appear once")
            owner[i] = name
        result[name] = ids
    return result


def _class_token(token: str, index: dict[str, int], last: int, spec: str, dataset: str) -> list[int]:
    match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", token)
    if match is None:
        if token in index:
            return [index[token]]
        raise FewShotError(f"{dataset}: {token!r} in split {spec!r} is neither a class position (0-{last}), "
                           f"a range like 0-5, nor a class name")
    lo, hi = int(match[1]), int(match[2] or match[1])
    if lo > hi or hi > last:
        raise FewShotError(f"{dataset}: {token!r} in split {spec!r} is out of range; {dataset} has classes "
                           f"0-{last}, and a range a-b needs a <= b")
    return list(range(lo, hi + 1))


def default_folder_split(num_classes: int, root: Path) -> dict[str, list[int]]:
    """First 60% of the classes train, next 20% val, last 20% test (at least one test class)."""
    n_test = max(1, round(0.2 * num_classes))
    n_val = round(0.2 * num_classes)
    n_train = num_classes - n_val - n_test
    if n_train < 1:
        raise FewShotError(f"folder dataset {root} has {num_classes} class(es); a train/test split needs "
                           f"at least 2 class sub-folders")
    split = {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val)),
             "test": list(range(n_train + n_val, num_classes))}
    return {name: ids for name, ids in split.items() if ids}


def build_splits(full: ImageDataset, plan: Plan, prefix: str) -> dict[str, ImageDataset]:
    """Materialise a plan (split -> ``(class index, quarter turns, class name)`` list) as datasets.

    Adds ``"trainval"`` (train then val classes) when the plan does not define it. Each
    split is gathered with one ``index_select`` per rotation, so this stays fast for the
    ~200,000 images of Omniglot's Vinyals split.
    """
    plan = dict(plan)
    if "train" in plan:
        plan.setdefault("trainval", plan["train"] + plan.get("val", []))
    order = torch.argsort(full.labels, stable=True)
    sizes = torch.bincount(full.labels, minlength=full.num_classes)
    starts = torch.cumsum(sizes, 0) - sizes
    rotated: dict[int, torch.Tensor] = {0: full.images}
    splits = {}
    for name, classes in plan.items():
        turns_of_class = torch.tensor([t for _, t, _ in classes], dtype=torch.long)
        by_turns = torch.argsort(turns_of_class, stable=True)
        class_ids = torch.tensor([c for c, _, _ in classes], dtype=torch.long)[by_turns]
        class_turns = turns_of_class[by_turns]
        counts = sizes[class_ids]
        ends = torch.cumsum(counts, 0)
        within = torch.arange(int(ends[-1])) - torch.repeat_interleave(ends - counts, counts)
        idx = order[torch.repeat_interleave(starts[class_ids], counts) + within]
        images = torch.empty((len(idx), *full.image_shape), dtype=torch.uint8)
        for t in sorted(set(class_turns.tolist())):
            if t not in rotated:
                rotated[t] = _rotate(full.images, t)
            first = int(torch.searchsorted(class_turns, t))
            last = int(torch.searchsorted(class_turns, t, right=True)) - 1
            lo, hi = int(ends[first] - counts[first]), int(ends[last])
            torch.index_select(rotated[t], 0, idx[lo:hi], out=images[lo:hi])
        labels = torch.repeat_interleave(by_turns, counts)
        splits[name] = ImageDataset(images, labels, [n for _, _, n in classes], f"{prefix}/{name}")
    return splits


def _rotate(images: torch.Tensor, turns: int) -> torch.Tensor:
    """``torch.rot90(images, turns, dims=(2, 3))`` (counter-clockwise) with a single copy."""
    if turns == 2:
        return images.flip(2, 3)
    return images.transpose(2, 3).flip(2 if turns == 1 else 3)


def _with_channels(dataset: ImageDataset, channels: int) -> ImageDataset:
    if dataset.image_shape[0] == channels:
        return dataset
    images = dataset.images.expand(-1, channels, -1, -1).contiguous()
    return ImageDataset(images, dataset.labels, dataset.class_names, dataset.name)


def _plain(ids: dict[str, list[int]], names: list[str]) -> Plan:
    return {split: [(i, 0, names[i]) for i in classes] for split, classes in ids.items()}


def _load_omniglot(data_dir, split, *, image_size, channels, download, progress) -> dict[str, ImageDataset]:
    directory = data_root(data_dir) / "omniglot"
    full, plan = omniglot.load(directory, split, image_size=image_size, download=download, progress=progress)
    return build_splits(_with_channels(full, channels), plan, f"omniglot/{split or omniglot.DEFAULT_SPLIT}")


def _load_mnist(data_dir, split, *, image_size, channels, download, progress) -> dict[str, ImageDataset]:
    full = mnist.load(data_root(data_dir) / "mnist", image_size=image_size, download=download, progress=progress)
    spec = split or mnist.DEFAULT_SPLIT
    plan = _plain(class_split(spec, full.class_names, "mnist"), full.class_names)
    return build_splits(_with_channels(full, channels), plan, f"mnist[{spec}]")


def _load_folder(data_dir, split, *, image_size, channels, download, progress) -> dict[str, ImageDataset]:
    if data_dir is None:
        raise FewShotError("the folder dataset needs data_dir (--data-dir): the folder whose sub-folders are the "
                           "classes, each holding PNG/JPEG images")
    root = Path(data_dir).expanduser()
    full = folder.load(root, image_size=image_size, channels=channels, progress=progress)
    ids = class_split(split, full.class_names, f"folder {root}") if split else \
        default_folder_split(full.num_classes, root)
    return build_splits(full, _plain(ids, full.class_names), f"folder/{root.name}[{split or 'default'}]")


DATASETS.register("omniglot")(DataSource(
    "omniglot", "Omniglot: 1,623 handwritten characters of 50 alphabets, 20 drawings each; splits 'lake', 'vinyals'",
    _load_omniglot, lambda data_dir: omniglot.describe(data_root(data_dir) / "omniglot")))
DATASETS.register("mnist")(DataSource(
    "mnist", "MNIST digits; class splits such as '0-5/6-9'",
    _load_mnist, lambda data_dir: mnist.describe(data_root(data_dir) / "mnist")))
DATASETS.register("folder")(DataSource(
    "folder", "any folder with one sub-folder of PNG/JPEG images per class (--data-dir is that folder)",
    _load_folder, lambda data_dir: folder.describe(Path(data_dir).expanduser() if data_dir is not None else None)))
