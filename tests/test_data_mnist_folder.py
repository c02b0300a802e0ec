"""MNIST and image-folder loaders: class splits, IDX validation, decoding, cache, and bad input."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import idx_bytes, png_bytes, write_folder, write_mnist
from PIL import Image

from fewshot.data import EpisodeSampler, load_splits
from fewshot.data.sources import class_split
from fewshot.errors import FewShotError

DIGITS = [str(d) for d in range(10)]


def mnist(root: Path, split: str | None = None, **kwargs) -> dict:
    return load_splits("mnist", split, data_dir=root, download=False, progress=False, **kwargs)


def folder(root: Path, split: str | None = None, **kwargs) -> dict:
    return load_splits("folder", split, data_dir=root, progress=False, **kwargs)


def test_mnist_default_split(tmp_path, decode_cache):
    splits = mnist(write_mnist(tmp_path))
    assert sorted(splits) == ["test", "train", "trainval"]
    assert splits["train"].class_names == DIGITS[:6] and splits["test"].class_names == DIGITS[6:]
    assert len(splits["train"]) == 18 and len(splits["test"]) == 12
    assert splits["trainval"].class_names == splits["train"].class_names
    assert splits["train"].image_shape == (1, 28, 28)


def test_mnist_plain_idx_with_train_files_resized(tmp_path, decode_cache):
    root = write_mnist(tmp_path, compress=False)
    write_mnist(root, prefix="train", per_digit=2)
    splits = mnist(root, "0-3/4-5/6-9", image_size=14, channels=3)
    assert splits["val"].class_names == ["4", "5"]
    assert len(splits["val"]) == 2 * (3 + 2)
    assert splits["test"].image_shape == (3, 14, 14)
    assert splits["trainval"].num_classes == 6


def test_mnist_keeps_pixels_at_28(tmp_path, decode_cache):
    splits = mnist(write_mnist(tmp_path), "0/1")
    image = splits["train"].images[0, 0]
    assert image[0, 0] == 0 and image[10, 10] == 0  # image 0 of digit 0 is filled with 0 * 7
    assert splits["test"].images[0, 0, 10, 10] == 3 * 7  # first image of digit 1 is image number 3


@pytest.mark.parametrize(("spec", "expected"), [
    ("0,2,4/1,3", {"train": [0, 2, 4], "test": [1, 3]}),
    ("0-1/2/3-4", {"train": [0, 1], "val": [2], "test": [3, 4]}),
    ("0-5/6-9", {"train": [0, 1, 2, 3, 4, 5], "test": [6, 7, 8, 9]}),
    ("0-9", {"test": list(range(10))}),
])
def test_class_split_syntax(spec, expected):
    assert class_split(spec, DIGITS) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("0-5/5-9", "class '5' in both train and test"),
    ("0-5/6-12", "out of range"),
    ("0,0/1", "twice in train"),
    ("lake", "neither a class position"),
    ("0-1/2/3/4", "not a class split"),
    ("0-5//6-9", "no classes to val"),
    ("0-5/seven", "neither a class position"),
])
def test_bad_class_split(tmp_path, decode_cache, spec, message):
    with pytest.raises(FewShotError, match=message):
        mnist(write_mnist(tmp_path), spec)


def test_mnist_missing_files(tmp_path, decode_cache):
    with pytest.raises(FewShotError) as error:
        mnist(tmp_path)
    message = str(error.value)
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "http://yann.lecun.com/exdb/mnist/t10k-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "mnist") in message


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: b"\x00\x00\x08\x01" + data[4:], "not an IDX file"),
    (lambda data: data[:-100], "truncated or corrupt"),
    (lambda data: gzip.compress(data)[:50], "corrupt or truncated gzip"),
])
def test_corrupt_idx_names_the_file(tmp_path, decode_cache, damage, message):
    root = write_mnist(tmp_path, compress=False)
    images = root / "mnist" / "t10k-images-idx3-ubyte"
    images.write_bytes(damage(images.read_bytes()))
    with pytest.raises(FewShotError, match=f"t10k-images-idx3-ubyte.*{message}"):
        mnist(root)


def test_mnist_train_files_come_in_pairs(tmp_path, decode_cache):
    root = write_mnist(tmp_path)
    write_mnist(root, prefix="train")
    (root / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FewShotError, match=r"(?s)train-labels-idx1-ubyte\.gz: get it from http"):
        mnist(root)


def test_mnist_label_count_mismatch(tmp_path, decode_cache):
    root = write_mnist(tmp_path, compress=False)
    (root / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(FewShotError, match="holds 30 images but .* holds 5 labels"):
        mnist(root)


def test_folder_default_split_and_rgb(tmp_path, decode_cache):
    root = write_folder(tmp_path / "photos", {name: 3 for name in "abcde"})
    splits = folder(root, channels=3, image_size=16)
    assert {k: v.class_names for k, v in splits.items()} == {
        "train": ["a", "b", "c"], "val": ["d"], "test": ["e"], "trainval": ["a", "b", "c", "d"]}
    images = splits["train"].images
    assert images.shape == (9, 3, 16, 16)
    assert images[0, 0].float().mean() > 150 and images[0, 1].float().mean() < 50  # class a is red
    gray = folder(root, "a,b/c", image_size=16)
    assert gray["train"].image_shape == (1, 16, 16) and sorted(gray) == ["test", "train", "trainval"]


def test_folder_split_by_class_name(tmp_path, decode_cache):
    root = write_folder(tmp_path / "photos", {"cat": 2, "dog": 2, "fox": 2})
    assert folder(root, "cat,fox/dog")["test"].class_names == ["dog"]


def test_folder_cache_sees_new_files(tmp_path, decode_cache):
    root = write_folder(tmp_path / "photos", {"a": 2, "b": 2})
    assert len(folder(root, "0/1")["train"]) == 2
    (root / "a" / "new.png").write_bytes(png_bytes(Image.new("L", (9, 9), 255)))
    assert len(folder(root, "0/1")["train"]) == 3


def test_folder_class_too_small_for_episodes(tmp_path, decode_cache):
    root = write_folder(tmp_path / "photos", {**{f"c{i}": 20 for i in range(5)}, "small": 4})
    test = folder(root, "0/1-5")["test"]
    with pytest.raises(FewShotError, match="'small' \\(4\\)"):
        EpisodeSampler(test, 5, 5, 15, 10)


def test_folder_corrupt_image_names_the_file(tmp_path, decode_cache):
    root = write_folder(tmp_path / "photos", {"a": 2, "b": 2})
    (root / "b" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(FewShotError, match=r"photos/b/000\.png.*corrupt"):
        folder(root)


def test_folder_bad_layouts(tmp_path, decode_cache):
    with pytest.raises(FewShotError, match="needs data_dir"):
        load_splits("folder")
    with pytest.raises(FewShotError, match="does not exist"):
        folder(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(png_bytes(Image.new("L", (4, 4))))
    with pytest.raises(FewShotError, match="has no sub-folders"):
        folder(tmp_path / "flat")
    root = write_folder(tmp_path / "photos", {"a": 2, "b": 2})
    (root / "empty").mkdir()
    with pytest.raises(FewShotError, match="empty in .* hold no PNG/JPEG"):
        folder(root)
    single = write_folder(tmp_path / "single", {"a": 2})
    with pytest.raises(FewShotError, match="at least 2 class"):
        folder(single)


def test_bad_image_size_and_channels(tmp_path, decode_cache):
    root = write_mnist(tmp_path)
    with pytest.raises(FewShotError, match="image_size"):
        mnist(root, image_size=0)
    with pytest.raises(FewShotError, match="channels must be 1"):
        mnist(root, channels=2)


def test_real_mnist_counts(tmp_path, decode_cache):
    root = os.environ.get("FEWSHOT_DATA")
    if not root or not (Path(root) / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("set FEWSHOT_DATA to a folder with the real mnist/ files")
    splits = mnist(Path(root))
    assert len(splits["train"]) + len(splits["test"]) == 10_000
    assert torch.equal(torch.unique(splits["test"].labels), torch.arange(4))


def test_test_only_split_evaluates_but_refuses_training(tmp_path, decode_cache):
    from fewshot.runs import load_data
    from fewshot.training.config import RunConfig

    root = write_mnist(tmp_path)
    splits = mnist(root, "0-9")
    assert list(splits) == ["test"] and splits["test"].num_classes == 10
    config = RunConfig(method="protonet", dataset="mnist", split="0-9", data_dir=str(root))
    assert load_data(config, ("test",), progress=False)["test"].num_classes == 10
    with pytest.raises(FewShotError, match="for evaluation only.*'0-6/7-9'"):
        load_data(config, ("train", "val"), progress=False)


def test_training_on_trainval_leaves_validation_out(tmp_path, decode_cache):
    from fewshot.runs import load_data
    from fewshot.training.config import RunConfig

    root = write_mnist(tmp_path)
    config = RunConfig(method="protonet", dataset="mnist", split="0-4/5/6-9", data_dir=str(root),
                       train_partition="trainval")
    data = load_data(config, ("trainval", "val"), progress=False)
    assert list(data) == ["trainval"] and data["trainval"].num_classes == 6  # digit 5 is trained on
    assert load_data(config, ("val",), progress=False)["val"].class_names == ["5"]  # still there to evaluate
