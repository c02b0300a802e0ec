import pytest
import torch
from synthetic import make_dataset

from fewshot.errors import FewShotError


def test_subset_relabels_and_keeps_images():
    ds = make_dataset(n_classes=5, per_class=3)
    sub = ds.subset(["c3", "c1"])
    assert sub.class_names == ["c3", "c1"] and sorted(sub.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert torch.equal(sub.images[sub.labels == 0], ds.images[9:12])
    assert torch.equal(sub.images[sub.labels == 1], ds.images[3:6])
    with pytest.raises(FewShotError, match="has no class 'nope'"):
        ds.subset(["nope"])


def test_rotated_classes_are_new_classes():
    ds = make_dataset(n_classes=2, per_class=3)
    rot = ds.with_rotated_classes()
    assert rot.num_classes == 8 and len(rot) == 24
    assert rot.class_names[:4] == ["c0/rot000", "c0/rot090", "c0/rot180", "c0/rot270"]
    first_090 = rot.images[rot.labels == 1][0]
    assert torch.equal(first_090, torch.rot90(ds.images[0], 1, dims=(1, 2)))


def test_mirrored_classes_are_new_classes_after_the_originals():
    ds = make_dataset(n_classes=2, per_class=3)
    both = ds.with_rotated_classes().with_mirrored_classes()
    assert both.num_classes == 16 and len(both) == 48
    assert both.class_names[8:10] == ["c0/rot000/mirror", "c0/rot090/mirror"]
    assert torch.equal(both.images[both.labels == 8][0], ds.images[0].flip(-1))
    assert torch.equal(both.images[both.labels == 0], ds.images[:3])


def test_getitem_gives_floats_in_unit_range():
    image, label = make_dataset(2, 2)[3]
    assert image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1 and label == 1


def test_split_images_keeps_every_class_and_is_reproducible():
    ds = make_dataset(n_classes=3, per_class=10)
    fit, held_out = ds.split_images(0.7, 1)
    assert len(fit) == 21 and len(held_out) == 9
    assert fit.class_sizes.tolist() == [7, 7, 7] and held_out.num_classes == 3
    again, _ = ds.split_images(0.7, 1)
    other, _ = ds.split_images(0.7, 1, 5)
    assert torch.equal(fit.images, again.images) and not torch.equal(fit.images, other.images)


def test_training_set_adds_the_classes_the_config_asks_for():
    from fewshot.runs import training_set
    from fewshot.training.config import RunConfig

    data = {"train": make_dataset(n_classes=3, per_class=2)}
    assert training_set(RunConfig(), data).num_classes == 3
    assert training_set(RunConfig(rotate_classes=True), data).num_classes == 12
    assert training_set(RunConfig(rotate_classes=True, mirror_classes=True), data).num_classes == 24
