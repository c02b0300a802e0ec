"""Omniglot loader: lake and vinyals splits, zips and extracted trees, cache, and every bad input."""
from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import BACKGROUND_ALPHABETS, DRAWINGS, EVALUATION_ALPHABETS, VINYALS, omniglot_png, write_omniglot

from fewshot.data import DATASETS, load_splits
from fewshot.data import imageio, omniglot
from fewshot.errors import FewShotError


def load(root: Path, split: str | None = None, **kwargs) -> dict:
    return load_splits("omniglot", split, data_dir=root, download=False, progress=False, **kwargs)


def test_lake_split_holds_out_validation_alphabets(omniglot_root):
    splits = load(omniglot_root)
    assert sorted(splits) == ["test", "train", "trainval", "val"]
    assert {n.split("/")[0] for n in splits["val"].class_names} == {"Hebrew"}
    assert {n.split("/")[0] for n in splits["train"].class_names} == {"Latin", "Greek"}
    assert splits["test"].num_classes == sum(EVALUATION_ALPHABETS.values())
    assert splits["trainval"].num_classes == sum(BACKGROUND_ALPHABETS.values())
    assert "Latin/character03" in splits["train"].class_names
    for ds in splits.values():
        assert ds.images.dtype == torch.uint8 and ds.image_shape == (1, 28, 28)
        assert (ds.class_sizes == DRAWINGS).all()
    images = splits["train"].images
    assert images[:, :, 0, 0].max() == 0, "background must be dark after inversion"
    assert images.amax(dim=(1, 2, 3)).min() > 200, "strokes must be bright"


def test_extracted_trees_equal_zips(tmp_path, decode_cache):
    zipped = load(write_omniglot(tmp_path / "zipped"))
    extracted = load(write_omniglot(tmp_path / "extracted", zipped=False))
    for name in zipped:
        assert zipped[name].class_names == extracted[name].class_names
        assert torch.equal(zipped[name].images, extracted[name].images)
        assert torch.equal(zipped[name].labels, extracted[name].labels)


def test_vinyals_split_rotates_each_class(omniglot_root):
    splits = load(omniglot_root, "vinyals")
    assert sorted(splits) == ["test", "train", "trainval", "val"]
    for name, lines in VINYALS.items():
        assert splits[name].class_names == lines
    train = splits["train"]
    upright, quarter = (train.images[i] for i in train.class_indices[:2])
    assert torch.equal(torch.rot90(upright, 1, dims=(2, 3)), quarter)
    assert not torch.equal(upright, quarter)
    assert splits["test"].class_names == ["Angelic/character01/rot000", "Keble/character01/rot090"]


def test_image_size_and_channels(omniglot_root):
    splits = load(omniglot_root, image_size=12, channels=3)
    images = splits["test"].images
    assert images.shape[1:] == (3, 12, 12)
    assert torch.equal(images[:, 0], images[:, 2])


def test_second_load_reads_the_cache(omniglot_root, decode_cache, monkeypatch):
    first = load(omniglot_root)
    assert list(decode_cache.glob("omniglot-*.images.npy"))

    def fail(*args, **kwargs):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(omniglot, "decode_images", fail)
    second = load(omniglot_root)
    assert torch.equal(first["train"].images, second["train"].images)

    archive = omniglot_root / "omniglot" / "images_evaluation.zip"
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load(omniglot_root)


def test_missing_data_lists_each_file_url_and_folder(tmp_path, decode_cache):
    with pytest.raises(FewShotError) as error:
        load(tmp_path / "empty", "vinyals")
    message = str(error.value)
    target = str(tmp_path / "empty" / "omniglot")
    assert message.count(target) >= 2
    for resource in (omniglot.BACKGROUND, omniglot.EVALUATION):
        assert resource.path in message and resource.urls[0] in message
    assert "splits/vinyals/train.txt" in message and "prototypical-networks" in message
    assert "download=True" in message


def test_missing_vinyals_files_point_to_their_source(tmp_path, decode_cache):
    root = write_omniglot(tmp_path, splits=False)
    assert load(root)["test"].num_classes == 3
    with pytest.raises(FewShotError, match=r"(?s)splits/vinyals/val\.txt.*prototypical-networks"):
        load(root, "vinyals")


def test_vinyals_line_with_unknown_class(omniglot_root):
    (omniglot_root / "omniglot/splits/vinyals/val.txt").write_text("Hebrew/character09/rot000\n")
    with pytest.raises(FewShotError, match=r"val\.txt, line 1: 'Hebrew/character09/rot000' is not a character"):
        load(omniglot_root, "vinyals")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_zip_names_the_file(omniglot_root, damage):
    archive = omniglot_root / "omniglot" / "images_background.zip"
    data = archive.read_bytes()
    archive.write_bytes(b"not a zip" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(FewShotError, match=r"images_background\.zip is not a readable zip archive.*corrupt"):
        load(omniglot_root)


def test_corrupt_png_names_the_member(omniglot_root):
    archive = omniglot_root / "omniglot" / "images_evaluation.zip"
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("images_evaluation/Keble/character01/9999_05.png", b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(FewShotError, match=r"images_evaluation\.zip:images_evaluation/Keble/character01/9999_05\.png"):
        load(omniglot_root)


def test_truncated_png_names_the_file(tmp_path):
    png = tmp_path / "broken.png"
    png.write_bytes(omniglot_png(1)[:40])
    with pytest.raises(FewShotError, match="broken.png.*corrupt, truncated"):
        imageio.read_image(png, 28)


def test_unknown_names_list_the_valid_ones(omniglot_root):
    with pytest.raises(FewShotError, match="lake, vinyals"):
        load(omniglot_root, "snell")
    with pytest.raises(FewShotError, match="folder, mnist, omniglot"):
        load_splits("omniglott")
    assert DATASETS.names() == ["folder", "mnist", "omniglot"]


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


def real_data_root() -> Path:
    root = os.environ.get("FEWSHOT_DATA")
    if not root or not all((Path(root) / "omniglot" / f).exists() for f in
                           ("images_background.zip", "images_evaluation.zip")):
        pytest.skip("set FEWSHOT_DATA to a folder with the real omniglot/ zips")
    return Path(root)


def test_real_omniglot_lake_counts(real_cache, monkeypatch):
    root = real_data_root()
    monkeypatch.setenv("FEWSHOT_CACHE", str(real_cache))
    splits = load(root)
    background, evaluation = splits["trainval"], splits["test"]
    assert background.num_classes == 964 and evaluation.num_classes == 659
    assert len({n.split("/")[0] for n in background.class_names}) == 30
    assert len({n.split("/")[0] for n in evaluation.class_names}) == 20
    assert splits["train"].num_classes + splits["val"].num_classes == 964
    assert {n.split("/")[0] for n in splits["val"].class_names} == set(omniglot.LAKE_VAL_ALPHABETS)
    for ds in splits.values():
        assert (ds.class_sizes == 20).all()
    start = time.perf_counter()
    load(root)
    assert time.perf_counter() - start < 1.0  # the README: well under a second


def test_real_omniglot_vinyals_counts(real_cache, monkeypatch):
    root = real_data_root()
    if not (root / "omniglot" / "splits" / "vinyals" / "train.txt").exists():
        pytest.skip("FEWSHOT_DATA has no omniglot/splits/vinyals")
    monkeypatch.setenv("FEWSHOT_CACHE", str(real_cache))
    splits = load(root, "vinyals")
    assert {k: v.num_classes for k, v in splits.items()} == {"train": 4112, "val": 688, "test": 1692,
                                                              "trainval": 4800}
    assert (splits["train"].class_sizes == 20).all()
