"""Sequence episodes: label offset, class balance, reproducibility, augmentation, bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fewshot.data.dataset import ImageDataset
from fewshot.data.sequences import SantoroAugmentation, SequenceEpisodes, instance_numbers
from fewshot.errors import FewShotError


pytestmark = pytest.mark.usefixtures("one_thread")


def tagged_dataset(n_classes: int = 8, per_class: int = 6, side: int = 6) -> ImageDataset:
    """Image ``j`` of class ``c`` has pixel (0, 0) = c + 1 and pixel (0, 1) = j: its identity is readable."""
    images = torch.zeros(n_classes * per_class, 1, side, side, dtype=torch.uint8)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    images[:, 0, 0, 0] = (labels + 1).to(torch.uint8)
    images[:, 0, 0, 1] = torch.arange(per_class).repeat(n_classes).to(torch.uint8)
    return ImageDataset(images, labels, [f"c{i}" for i in range(n_classes)], "tagged")


def test_input_at_t_carries_the_label_of_t_minus_1():
    batch = SequenceEpisodes(tagged_dataset(), n_classes=3, instances=4, batch_size=5).batch(0)
    n = 3
    previous = batch.inputs[..., -n:]
    assert batch.inputs.shape == (5, 12, 36 + n)
    assert torch.all(previous[:, 0] == 0)
    assert torch.equal(previous[:, 1:], F.one_hot(batch.labels[:, :-1], n).float())
    assert torch.equal(batch.inputs[..., :-n], batch.images.flatten(2))


def test_each_class_appears_instances_times_with_its_own_images():
    ds = tagged_dataset()
    episodes = SequenceEpisodes(ds, n_classes=4, instances=5, batch_size=6, seed=3)
    batch = episodes.batch(2)
    counts = F.one_hot(batch.labels, 4).sum(1)
    assert torch.all(counts == 5)
    assert all(len(set(row.tolist())) == 4 for row in batch.classes)  # distinct classes per episode
    pixel_class = (batch.images[:, :, 0, 0, 0] * 255).round().long() - 1
    assert torch.equal(pixel_class, batch.classes.gather(1, batch.labels))  # image matches its label's class
    for b in range(6):  # no image repeated within a class
        ids = list(zip(pixel_class[b].tolist(), (batch.images[b, :, 0, 0, 1] * 255).round().long().tolist()))
        assert len(set(ids)) == len(ids)


def test_min_classes_mixes_in_shorter_episodes_over_a_random_subset_of_the_labels():
    ds = tagged_dataset()
    episodes = SequenceEpisodes(ds, n_classes=6, instances=3, batch_size=8, seed=1, min_classes=2)
    sizes = set()
    for i in range(30):
        batch = episodes.batch(i)
        shown = (batch.classes >= 0).sum(1)
        m = int(shown[0])
        sizes.add(m)
        assert torch.all(shown == m) and batch.labels.shape == (8, 3 * m) and batch.n_classes == 6
        counts = F.one_hot(batch.labels, 6).sum(1)
        assert torch.equal(counts > 0, batch.classes >= 0) and torch.all(counts[counts > 0] == 3)
        pixel_class = (batch.images[:, :, 0, 0, 0] * 255).round().long() - 1
        assert torch.equal(pixel_class, batch.classes.gather(1, batch.labels))  # image matches its label's class
        assert batch.inputs.shape[-1] == 6 * 6 + 6  # the label input keeps all six units
    assert sizes == {2, 3, 4, 5, 6}
    labels_used = {tuple((episodes.batch(i).classes[0] >= 0).tolist()) for i in range(30)}
    assert len(labels_used) > 10  # not always the first m labels
    assert torch.equal(SequenceEpisodes(ds, 6, 3, 8, seed=1, min_classes=2).batch(4).images, episodes.batch(4).images)
    with pytest.raises(FewShotError, match="min_classes must be an integer from 1 to n_classes \\(6\\), got 7"):
        SequenceEpisodes(ds, n_classes=6, instances=3, min_classes=7)


def test_label_assignment_and_order_are_random_per_episode():
    batch = SequenceEpisodes(tagged_dataset(), n_classes=4, instances=3, batch_size=32).batch(0)
    assert len({tuple(r) for r in batch.labels.tolist()}) > 20
    assert len({tuple(r) for r in batch.classes.tolist()}) > 20


def test_batches_are_reproducible_from_seed_and_index():
    ds = tagged_dataset()
    a = SequenceEpisodes(ds, 3, 4, 8, seed=7, augmentation=SantoroAugmentation())
    b = SequenceEpisodes(ds, 3, 4, 8, seed=7, augmentation=SantoroAugmentation())
    assert torch.equal(a.batch(5).images, b.batch(5).images) and torch.equal(a.batch(5).labels, b.batch(5).labels)
    assert not torch.equal(a.batch(5).labels, a.batch(6).labels)
    assert not torch.equal(SequenceEpisodes(ds, 3, 4, 8, seed=8).batch(5).labels, a.batch(5).labels)


def test_instance_numbers_count_appearances():
    labels = torch.tensor([[0, 1, 0, 0, 2, 1]])
    assert instance_numbers(labels, 3).tolist() == [[1, 1, 2, 3, 1, 2]]


def test_class_rotation_is_a_multiple_of_90_shared_by_the_class():
    ds = tagged_dataset(n_classes=6, per_class=6, side=6)
    aug = SantoroAugmentation(class_rotations=True, max_rotation=0.0, max_shift=0.0)
    plain = SequenceEpisodes(ds, 3, 4, 16, seed=1).batch(0)
    rotated = SequenceEpisodes(ds, 3, 4, 16, seed=1, augmentation=aug).batch(0)
    assert torch.equal(plain.labels, rotated.labels)
    turns_seen = set()
    for b in range(16):
        for label in range(3):
            steps = (plain.labels[b] == label).nonzero().flatten()
            turns = [next(k for k in range(4) if torch.allclose(
                torch.rot90(plain.images[b, t], k, (1, 2)), rotated.images[b, t], atol=1e-5)) for t in steps]
            assert len(set(turns)) == 1  # all images of a class turned alike
            turns_seen.add(turns[0])
    assert turns_seen == {0, 1, 2, 3}


def test_small_rotations_and_shifts_change_images_but_keep_their_mass():
    ds = ImageDataset(torch.zeros(20, 1, 20, 20, dtype=torch.uint8), torch.arange(4).repeat_interleave(5),
                      list("abcd"))
    ds.images[:, 0, 8:12, 8:12] = 255
    aug = SantoroAugmentation(class_rotations=False, max_rotation=10.0, max_shift=2.0)
    batch = SequenceEpisodes(ds, 2, 5, 4, augmentation=aug).batch(0)
    assert not torch.allclose(batch.images, ds.images_at(torch.zeros(1, dtype=torch.long)).expand_as(batch.images))
    mass = batch.images.sum((2, 3, 4))
    assert torch.allclose(mass, torch.full_like(mass, 16.0), rtol=0.1)


def test_too_many_classes_is_a_clear_error():
    with pytest.raises(FewShotError, match="9 classes.*has 8"):
        SequenceEpisodes(tagged_dataset(), n_classes=9)


def test_too_many_instances_without_augmentation_is_a_clear_error():
    with pytest.raises(FewShotError, match="7 instances.*at most 6"):
        SequenceEpisodes(tagged_dataset(per_class=6), n_classes=2, instances=7)


def test_augmentation_allows_repeats_for_small_classes():
    episodes = SequenceEpisodes(tagged_dataset(per_class=3), n_classes=2, instances=7, batch_size=2,
                                augmentation=SantoroAugmentation())
    assert torch.all(F.one_hot(episodes.batch(0).labels, 2).sum(1) == 7)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_sizes_are_clear_errors(bad):
    with pytest.raises(FewShotError, match="positive integer"):
        SequenceEpisodes(tagged_dataset(), n_classes=2, instances=bad)
