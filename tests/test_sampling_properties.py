"""Property tests of episode sampling over dataset shapes, ways, shots, queries and seeds (hypothesis):
every episode's classes are distinct, support and query are disjoint, counts are exact, and episode ``i``
is the same whether drawn alone or after others."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fewshot.data.dataset import ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError

PROPERTIES = settings(max_examples=60, deadline=None)


@st.composite
def episode_settings(draw: st.DrawFn) -> tuple[ImageDataset, int, int, int, int]:
    """A dataset of 1-12 classes of 1-9 images each, its labels shuffled, and an episode shape it can supply.

    Image ``i`` holds the value ``i`` in every pixel, so an episode's images name their dataset indices.
    """
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=12))
    labels = torch.tensor([c for c, size in enumerate(sizes) for _ in range(size)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))]
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    dataset = ImageDataset(images, labels, [f"c{c}" for c in range(len(sizes))], "drawn")
    n_way = draw(st.integers(1, len(sizes)))
    k_shot = draw(st.integers(1, min(sizes)))
    n_query = draw(st.integers(0, min(sizes) - k_shot))
    return dataset, n_way, k_shot, n_query, draw(st.integers(0, 2**31 - 1))


@PROPERTIES
@given(episode_settings(), st.integers(0, 5))
def test_every_episode_has_distinct_classes_disjoint_support_and_query_and_exact_counts(drawn, first):
    dataset, n_way, k_shot, n_query, seed = drawn
    sampler = EpisodeSampler(dataset, n_way, k_shot, n_query, first + 3, seed)
    for i in range(first, first + 3):
        idx, classes = sampler.indices(i)
        assert idx.shape == (n_way, k_shot + n_query) and classes.shape == (n_way,)
        assert len(set(classes.tolist())) == n_way
        assert all((dataset.labels[row] == c).all() for row, c in zip(idx, classes))
        assert len(set(idx.flatten().tolist())) == idx.numel()  # no image twice: support and query disjoint
        episode = sampler.episode(i)
        support = (episode.support[:, 0, 0, 0] * 255).round().long()
        query = (episode.query[:, 0, 0, 0] * 255).round().long()
        assert support.tolist() == idx[:, :k_shot].flatten().tolist()
        assert query.tolist() == idx[:, k_shot:].flatten().tolist()
        assert episode.support_labels.tolist() == [c for c in range(n_way) for _ in range(k_shot)]
        assert episode.query_labels.tolist() == [c for c in range(n_way) for _ in range(n_query)]
        assert torch.equal(episode.classes, classes)


@PROPERTIES
@given(episode_settings(), st.integers(0, 7))
def test_episode_i_is_the_same_alone_or_after_others(drawn, i):
    dataset, n_way, k_shot, n_query, seed = drawn
    alone = EpisodeSampler(dataset, n_way, k_shot, n_query, 8, seed).indices(i)
    after = EpisodeSampler(dataset, n_way, k_shot, n_query, 8, seed)
    flat = list(after)  # every episode drawn, in order
    for j in (7, 0, i):
        after.indices(j)
    again = after.indices(i)
    assert torch.equal(alone[0], again[0]) and torch.equal(alone[1], again[1])
    assert flat[i] == torch.cat([alone[0][:, :k_shot].flatten(), alone[0][:, k_shot:].flatten()]).tolist()


@PROPERTIES
@given(episode_settings())
def test_episodes_that_the_dataset_cannot_supply_are_refused(drawn):
    dataset, n_way, k_shot, n_query, seed = drawn
    fewest = int(dataset.class_sizes.min())
    with pytest.raises(FewShotError, match=f"use at most {dataset.num_classes} ways"):
        EpisodeSampler(dataset, dataset.num_classes + 1, k_shot, n_query, 1, seed)
    with pytest.raises(FewShotError, match=f"use shots \\+ queries <= {fewest}"):
        EpisodeSampler(dataset, n_way, k_shot, fewest - k_shot + 1, 1, seed)
