"""N-way K-shot Q-query episode sampling (Vinyals et al. 2016; Snell et al. 2017)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from fewshot.data.augment import random_distortion
from fewshot.data.dataset import Episode, ImageDataset
from fewshot.errors import FewShotError
from fewshot.seeding import generator


class EpisodeSampler(Sampler[list[int]]):
    """Draws episodes of ``n_way`` classes with ``k_shot + n_query`` images each.

    Episode ``i`` depends only on ``(seed, i)``: :meth:`indices` rebuilds it at any time.
    Iterating yields flat index lists (support images first, class by class, then
    queries), so the sampler works as a ``batch_sampler`` of a ``DataLoader``;
    :meth:`episode` builds the tensors directly, which is faster.

    With a ``distortion`` (keyword arguments of :func:`~fewshot.data.augment.random_distortion`,
    e.g. ``KOCH_DISTORTION``), :meth:`episode` distorts every image by its own random affine
    map, also drawn from ``(seed, i)``; with ``distort_until`` too, only episodes
    ``i < distort_until`` are distorted and the later ones are clean, like test images.

    With ``within_alphabet``, all classes of an episode come from one alphabet
    (:meth:`~fewshot.data.dataset.ImageDataset.alphabets`), drawn uniformly among those with at
    least ``n_way`` classes: the one-shot test of Lake et al. (2015) and Koch et al. (2015).
    Omniglot's 20 drawings of a character are by 20 different people, so the support and the
    queries of a class are always by different drawers.

    Raises :class:`~fewshot.errors.FewShotError` at construction if the dataset cannot
    supply such episodes.

    Example:
        >>> sampler = EpisodeSampler(dataset, n_way=5, k_shot=1, n_query=15, n_episodes=100)
        >>> ep = sampler.episode(0)
        >>> ep.support.shape[0], ep.query.shape[0]
        (5, 75)
    """

    def __init__(
        self,
        dataset: ImageDataset,
        n_way: int,
        k_shot: int,
        n_query: int,
        n_episodes: int,
        seed: int = 0,
        distortion: dict[str, Any] | None = None,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        dataset.check_episode(n_way, k_shot, n_query)
        if distort_until is not None and distort_until < 0:
            raise FewShotError(f"distort_until must be a number of episodes >= 0 (or None: all), got {distort_until}")
        self.dataset = dataset
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.n_episodes = n_episodes
        self.seed = seed
        self.distortion, self.distort_until = distortion, distort_until
        self._table, self._invalid = dataset.index_table()
        self.within_alphabet = within_alphabet
        self._alphabets = [m for m in dataset.alphabets().values() if len(m) >= n_way] if within_alphabet else []
        if within_alphabet and not self._alphabets:
            largest = max(len(m) for m in dataset.alphabets().values())
            raise FewShotError(
                f"within-alphabet {n_way}-way episodes need an alphabet of at least {n_way} classes, but the "
                f"largest alphabet of {dataset.name} has {largest} (class names group as '<Alphabet>/...'); "
                f"use at most {largest} ways, or leave out --within-alphabet")

    def __len__(self) -> int:
        return self.n_episodes

    def indices(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Episode ``i`` as ``(indices [n_way, k_shot + n_query], classes [n_way])``."""
        g = generator(self.seed, i)
        if self.within_alphabet:
            members = self._alphabets[int(torch.randint(len(self._alphabets), (1,), generator=g))]
            classes = members[torch.randperm(len(members), generator=g)[: self.n_way]]
        else:
            classes = torch.randperm(self.dataset.num_classes, generator=g)[: self.n_way]
        keys = torch.rand(self.n_way, self._table.shape[1], generator=g)
        keys.masked_fill_(self._invalid[classes], 2.0)
        picks = keys.argsort(dim=1)[:, : self.k_shot + self.n_query]
        return self._table[classes].gather(1, picks), classes

    def episode(self, i: int) -> Episode:
        """Episode ``i`` as image tensors with episode labels ``0 .. n_way - 1``."""
        idx, classes = self.indices(i)
        images = self.dataset.images_at(idx)
        if self.distortion is not None and (self.distort_until is None or i < self.distort_until):
            flat = random_distortion(images.flatten(0, 1), generator(self.seed, i, 1), **self.distortion)
            images = flat.view(images.shape)
        labels = torch.arange(self.n_way)
        k = self.k_shot
        return Episode(
            support=images[:, :k].flatten(0, 1),
            support_labels=labels.repeat_interleave(k),
            query=images[:, k:].flatten(0, 1),
            query_labels=labels.repeat_interleave(self.n_query),
            classes=classes,
        )

    def __iter__(self) -> Iterator[list[int]]:
        k = self.k_shot
        for i in range(self.n_episodes):
            idx, _ = self.indices(i)
            yield torch.cat([idx[:, :k].flatten(), idx[:, k:].flatten()]).tolist()
