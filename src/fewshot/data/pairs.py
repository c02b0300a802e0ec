"""Same/different image pairs for Siamese networks (Koch et al. 2015; seed 000's ``make_pairs``).

A batch of ``2m`` pairs holds ``m`` pairs of two distinct images of one class
(label 1) and ``m`` pairs of images of two different classes (label 0). Classes are
drawn uniformly, so a class with many images is not favoured. Batch ``i`` depends
only on ``(seed, i)``, distortion included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fewshot.data.augment import random_affine
from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.seeding import generator


@dataclass
class PairBatch:
    """Pairs of images and their labels: 1.0 where ``left[i]`` and ``right[i]`` share a class."""

    left: torch.Tensor
    right: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(*(t.to(device, non_blocking=True) for t in (self.left, self.right, self.labels)))


class PairSampler:
    """Draws balanced batches of same-class and different-class pairs from ``dataset``.

    Args:
        dataset: the labelled images to pair (the training classes: pairs never leave it).
        batch_size: pairs per batch, an even number: half same, half different.
        seed: batch ``i`` is drawn from ``generator(seed, i)`` alone.
        distortion: keyword arguments of :func:`~fewshot.data.augment.random_affine`
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
        if dataset.num_classes < 2:
            raise FewShotError(
                f"{dataset.name} has a single class, so no different-class (negative) pairs can be drawn; "
                f"Siamese training needs at least two classes"
            )
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
        self._table = torch.zeros(dataset.num_classes, int(sizes.max()), dtype=torch.long)
        for c, idx in enumerate(dataset.class_indices):
            self._table[c, : len(idx)] = idx

    def indices(self, i: int, g: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``i`` as ``(left indices [b], right indices [b], labels [b])``: same pairs first."""
        g = generator(self.seed, i) if g is None else g
        m = self.batch_size // 2
        same = self._pairable[torch.randint(len(self._pairable), (m,), generator=g)]
        n_same = self._sizes[same]
        first = (torch.rand(m, generator=g) * n_same).long()
        second = (torch.rand(m, generator=g) * (n_same - 1)).long()
        second += second >= first  # a different image of the same class
        k = len(self._nonempty)
        a = torch.randint(k, (m,), generator=g)
        b = (a + 1 + torch.randint(k - 1, (m,), generator=g)) % k  # a different class
        class_a, class_b = self._nonempty[a], self._nonempty[b]
        pick_a = (torch.rand(m, generator=g) * self._sizes[class_a]).long()
        pick_b = (torch.rand(m, generator=g) * self._sizes[class_b]).long()
        left = torch.cat([self._table[same, first], self._table[class_a, pick_a]])
        right = torch.cat([self._table[same, second], self._table[class_b, pick_b]])
        labels = torch.cat([torch.ones(m), torch.zeros(m)])
        return left, right, labels

    def batch(self, i: int) -> PairBatch:
        """Batch ``i`` as images, distorted if the sampler was given a distortion."""
        g = generator(self.seed, i)
        left, right, labels = self.indices(i, g)
        images = self.dataset.images_at(torch.cat([left, right]))
        if self.distortion is not None:
            images = random_affine(images, g, **self.distortion)
        return PairBatch(images[: len(left)], images[len(left):], labels)

