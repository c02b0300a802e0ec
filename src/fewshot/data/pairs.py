"""Same/different image pairs for Siamese networks (Koch et al. 2015; seed 000's ``make_pairs``).

As in the seed's ``make_pairs``, each of ``m`` anchor images gets a partner of its own
class (a same pair, label 1) and a partner of another class (a different pair, label
0): ``2m`` pairs, half and half, from ``3m`` images, each embedded once. Anchor classes
are drawn uniformly (a class with many images is not favoured), the different class
uniformly among the others. Batch ``i`` depends only on ``(seed, i)``, distortion
included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fewshot.data.augment import random_distortion
from fewshot.data.dataset import ImageDataset
from fewshot.data.triplets import PKSampler
from fewshot.errors import FewShotError
from fewshot.seeding import generator


@dataclass
class PairBatch:
    """Pairs of images: pair ``i`` is ``(images[left[i]], images[right[i]])``, label 1.0 if one class.

    An image may appear in several pairs; it is stored (and embedded) once.
    """

    images: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(*(t.to(device, non_blocking=True) for t in (self.images, self.left, self.right, self.labels)))


class PairSampler:
    """Draws balanced batches of same-class and different-class pairs from ``dataset``.

    Args:
        dataset: the labelled images to pair (the training classes: pairs never leave it).
        batch_size: pairs per batch, an even number: half same, half different.
        seed: batch ``i`` is drawn from ``generator(seed, i)`` alone.
        distortion: keyword arguments of :func:`~fewshot.data.augment.random_distortion`
            (``KOCH_DISTORTION`` for Koch's), applied to every image independently; ``None``: none.

    Raises :class:`~fewshot.errors.FewShotError` when no negative pairs (one class) or
    no positive pairs (no class with two images) can be drawn.

    Example:
        >>> from fewshot.data.augment import KOCH_DISTORTION
        >>> sampler = PairSampler(dataset, batch_size=128, seed=0, distortion=KOCH_DISTORTION)
        >>> batch = sampler.batch(0)
        >>> batch.left.shape[0], batch.labels.mean().item()
        (128, 0.5)
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int = 0,
                 distortion: dict[str, Any] | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 2 or batch_size % 2:
            raise FewShotError(f"pair batches hold half same and half different pairs, so batch_size must be an "
                               f"even number >= 2, got {batch_size!r}")
        require_two_classes(dataset)
        sizes = dataset.class_sizes
        self._pairable = (sizes >= 2).nonzero().flatten()
        if len(self._pairable) == 0:
            raise FewShotError(
                f"no class of {dataset.name} has two images, so no same-class (positive) pairs can be drawn; "
                f"give at least one class two or more images"
            )
        self._nonempty = (sizes >= 1).nonzero().flatten()
        if len(self._nonempty) < 2:
            raise FewShotError(f"only one class of {dataset.name} has images, so no different-class pairs "
                               f"can be drawn; give at least two classes images")
        self.dataset, self.batch_size, self.seed, self.distortion = dataset, batch_size, seed, distortion
        self._sizes = sizes
        self._table = dataset.index_table()[0]

    def draw(self, i: int, g: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``i`` as dataset indices ``(anchors, same-class partners, other-class partners)``, ``m`` each."""
        g = generator(self.seed, i) if g is None else g
        m = self.batch_size // 2
        anchor_class = self._pairable[torch.randint(len(self._pairable), (m,), generator=g)]
        size = self._sizes[anchor_class]
        first = (torch.rand(m, generator=g) * size).long()
        second = (torch.rand(m, generator=g) * (size - 1)).long()
        second += second >= first  # a different image of the same class
        k = len(self._nonempty)
        position = torch.searchsorted(self._nonempty, anchor_class)
        other_class = self._nonempty[(position + 1 + torch.randint(k - 1, (m,), generator=g)) % k]
        pick = (torch.rand(m, generator=g) * self._sizes[other_class]).long()
        return (self._table[anchor_class, first], self._table[anchor_class, second],
                self._table[other_class, pick])

    def indices(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``i`` as dataset indices ``(left [2m], right [2m], labels [2m])``: same pairs first."""
        anchors, same, other = self.draw(i)
        m = len(anchors)
        return torch.cat([anchors, anchors]), torch.cat([same, other]), torch.cat([torch.ones(m), torch.zeros(m)])

    def batch(self, i: int) -> PairBatch:
        """Batch ``i`` as images (distorted if the sampler was given a distortion) and pairs of them."""
        g = generator(self.seed, i)
        anchors, same, other = self.draw(i, g)
        images = self.dataset.images_at(torch.cat([anchors, same, other]))
        if self.distortion is not None:
            images = random_distortion(images, g, **self.distortion)
        m = len(anchors)
        left = torch.arange(m).repeat(2)
        right = torch.arange(m, 3 * m)
        return PairBatch(images, left, right, torch.cat([torch.ones(m), torch.zeros(m)]))


class AllPairsSampler:
    """Batches of ``P`` classes x ``K`` images in which every two images form a pair.

    A batch of ``n = P * K`` images gives ``n (n - 1) / 2`` pairs, of which ``P K (K - 1) / 2``
    are same-class: far more pairs per embedded image than :class:`PairSampler`'s two per
    anchor, for the same cost of the tower. Classes and images are drawn as the classes and
    images of a :class:`~fewshot.data.triplets.PKSampler` batch, so batch ``i`` depends only
    on ``(seed, i)``, distortion included.

    Args:
        dataset: the labelled images to pair (the training classes).
        classes_per_batch: P, at least 2 (different pairs need two classes).
        images_per_class: K, at least 2 (same pairs need two images of a class).
        seed: batch ``i`` is drawn from ``generator(seed, i)`` alone.
        distortion: keyword arguments of :func:`~fewshot.data.augment.random_distortion`, or ``None``.

    Example:
        >>> batch = AllPairsSampler(dataset, classes_per_batch=32, images_per_class=4).batch(0)
        >>> batch.images.shape[0], len(batch), int(batch.labels.sum())
        (128, 8128, 192)
    """

    def __init__(self, dataset: ImageDataset, classes_per_batch: int, images_per_class: int, seed: int = 0,
                 distortion: dict[str, Any] | None = None) -> None:
        require_two_classes(dataset)
        self._classes = PKSampler(dataset, classes_per_batch, images_per_class, seed)
        self.dataset, self.seed, self.distortion = dataset, seed, distortion
        n = classes_per_batch * images_per_class
        self.left, self.right = torch.triu_indices(n, n, offset=1)
        labels = torch.arange(classes_per_batch).repeat_interleave(images_per_class)
        self.labels = (labels[self.left] == labels[self.right]).float()

    def batch(self, i: int) -> PairBatch:
        """Batch ``i``: ``P * K`` images (class by class) and all pairs of them."""
        images = self.dataset.images_at(self._classes.indices(i).flatten())
        if self.distortion is not None:
            images = random_distortion(images, generator(self.seed, i, 1), **self.distortion)
        return PairBatch(images, self.left, self.right, self.labels)


def require_two_classes(dataset: ImageDataset) -> None:
    """Raise one clear error when ``dataset`` has a single class: no different-class pair exists."""
    if dataset.num_classes < 2:
        raise FewShotError(
            f"{dataset.name} has a single class, so no different-class (negative) pairs can be drawn; "
            f"Siamese training needs at least two classes"
        )


def balanced_pair_mean(losses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Half the mean of ``losses`` over same pairs (label 1) plus half over different pairs.

    Equal to the plain mean on :class:`PairSampler`'s half-and-half batches; on
    :class:`AllPairsSampler`'s it keeps the few same pairs from being outweighed.
    """
    same = labels > 0.5
    n_same = int(same.sum())
    if n_same in (0, len(labels)):  # one kind of pair only: nothing to balance
        return losses.mean()
    return 0.5 * (losses[same].mean() + losses[~same].mean())


def hardest_negatives(scores: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """Mask ``[pairs]`` of each image's hardest different-class pair: the one it scores most alike.

    Batch-hard mining (Hermans, Beyer and Leibe 2017) for pairs: of the many different pairs
    of an all-pairs batch, most are already told apart, and their mean hides the few that are
    not. Each image of ``batch.images`` marks at most one different pair (ties may mark more);
    same pairs are never marked. Selection only: ``scores`` need not carry gradients.

    Example:
        >>> batch = AllPairsSampler(dataset, classes_per_batch=32, images_per_class=4).batch(0)
        >>> keep = hardest_negatives(scores, batch) | (batch.labels > 0.5)  # the pairs to train on
    """
    different = batch.labels < 0.5
    s = scores.detach().float().masked_fill(~different, -torch.inf).repeat(2)
    images = torch.cat([batch.left, batch.right])
    best = torch.full((len(batch.images),), -torch.inf, device=s.device).scatter_reduce(0, images, s, "amax")
    hit = (s == best[images]) & different.repeat(2)
    keep = torch.zeros(len(batch), dtype=torch.bool, device=s.device)
    keep[torch.arange(len(batch), device=s.device).repeat(2)[hit]] = True
    return keep
