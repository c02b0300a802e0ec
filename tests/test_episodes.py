import pytest
import torch
from synthetic import make_dataset
from torch.utils.data import DataLoader

from fewshot.data.dataset import ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError


def test_episode_shapes_labels_and_membership():
    ds = make_dataset(n_classes=10, per_class=8)
    sampler = EpisodeSampler(ds, n_way=5, k_shot=2, n_query=3, n_episodes=4, seed=1)
    ep = sampler.episode(0)
    assert ep.support.shape == (10, 1, 28, 28) and ep.query.shape == (15, 1, 28, 28)
    assert ep.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_labels.tolist() == sum(([c] * 3 for c in range(5)), [])
    assert 0.0 <= ep.support.min() and ep.support.max() <= 1.0
    idx, classes = sampler.indices(0)
    assert len(set(classes.tolist())) == 5
    for row, c in zip(idx, classes):
        assert (ds.labels[row] == c).all()
        assert len(set(row.tolist())) == 5  # support and query never share an image


def test_episodes_are_reproducible_and_seed_dependent():
    ds = make_dataset(n_classes=10, per_class=8)
    a = EpisodeSampler(ds, 5, 1, 2, 10, seed=3)
    b = EpisodeSampler(ds, 5, 1, 2, 10, seed=3)
    c = EpisodeSampler(ds, 5, 1, 2, 10, seed=4)
    assert all(torch.equal(a.indices(i)[0], b.indices(i)[0]) for i in range(10))
    assert not all(torch.equal(a.indices(i)[0], c.indices(i)[0]) for i in range(10))
    for i in (9, 0, 3):
        a.indices(i)
    assert torch.equal(EpisodeSampler(ds, 5, 1, 2, 10, seed=3).indices(7)[0], a.indices(7)[0])  # rebuilt alone
    assert list(a) == list(b)


def test_distortion_changes_images_reproducibly_and_keeps_the_draw():
    from fewshot.data.augment import KOCH_DISTORTION

    ds = make_dataset(n_classes=10, per_class=8)
    plain = EpisodeSampler(ds, 5, 1, 2, 10, seed=3)
    distorted = EpisodeSampler(ds, 5, 1, 2, 10, seed=3, distortion=KOCH_DISTORTION)
    a, b = distorted.episode(4), distorted.episode(4)
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)  # rebuilt alike
    assert torch.equal(plain.indices(4)[0], distorted.indices(4)[0])  # same images drawn
    assert not torch.equal(a.query, plain.episode(4).query)
    assert a.query.shape == plain.episode(4).query.shape and 0.0 <= a.query.min() <= a.query.max() <= 1.0


def test_distort_until_leaves_the_later_episodes_clean():
    from fewshot.data.augment import KOCH_DISTORTION

    ds = make_dataset(n_classes=10, per_class=8)
    plain = EpisodeSampler(ds, 5, 1, 2, 10, seed=3)
    always = EpisodeSampler(ds, 5, 1, 2, 10, seed=3, distortion=KOCH_DISTORTION)
    until = EpisodeSampler(ds, 5, 1, 2, 10, seed=3, distortion=KOCH_DISTORTION, distort_until=4)
    assert all(torch.equal(until.episode(i).query, always.episode(i).query) for i in range(4))
    assert all(torch.equal(until.episode(i).query, plain.episode(i).query) for i in range(4, 10))
    assert not torch.equal(always.episode(4).query, plain.episode(4).query)
    with pytest.raises(FewShotError, match="distort_until must be a number of episodes >= 0"):
        EpisodeSampler(ds, 5, 1, 2, 10, distortion=KOCH_DISTORTION, distort_until=-1)


def test_unequal_class_sizes_only_sample_valid_images():
    images = torch.zeros(3 + 7 + 5, 1, 8, 8, dtype=torch.uint8)
    labels = torch.tensor([0] * 3 + [1] * 7 + [2] * 5)
    ds = ImageDataset(images, labels, ["a", "b", "c"])
    sampler = EpisodeSampler(ds, 3, 1, 2, 50)
    for i in range(50):
        idx, classes = sampler.indices(i)
        for row, c in zip(idx, classes):
            assert (ds.labels[row] == c).all() and len(set(row.tolist())) == 3


def test_works_as_dataloader_batch_sampler():
    ds = make_dataset(n_classes=6, per_class=5)
    sampler = EpisodeSampler(ds, 3, 1, 2, 4)
    loader = DataLoader(ds, batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == 4
    images, labels = batches[0]
    assert images.shape == (9, 1, 28, 28)
    ep = sampler.episode(0)
    assert torch.equal(images[:3], ep.support) and torch.equal(images[3:], ep.query)


def test_too_many_ways_says_which_number_to_change():
    ds = make_dataset(n_classes=4, per_class=5)
    with pytest.raises(FewShotError, match=r"5-way episodes need 5 classes .* has 4; use at most 4 ways"):
        EpisodeSampler(ds, 5, 1, 1, 1)


def test_too_many_shots_names_small_classes():
    images = torch.zeros(9, 1, 8, 8, dtype=torch.uint8)
    ds = ImageDataset(images, torch.tensor([0] * 6 + [1] * 3), ["big", "small"], "tiny")
    with pytest.raises(FewShotError, match=r"5-shot 1-query episodes need 6 images per class.*'small' \(3\).*<= 3"):
        EpisodeSampler(ds, 2, 5, 1, 1)


@pytest.mark.parametrize("n_way,k_shot,n_query", [(0, 1, 1), (2, 0, 1), (2, 1, -1)])
def test_non_positive_numbers_are_refused(n_way, k_shot, n_query):
    with pytest.raises(FewShotError, match="must be a positive integer"):
        EpisodeSampler(make_dataset(4, 5), n_way, k_shot, n_query, 1)
