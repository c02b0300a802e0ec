"""Batches for metric learning: random triplets (seed 003) and P classes x K images.

Both samplers return a :class:`MetricBatch` (images, their labels, and for random
triplets the triplets themselves); batch ``i`` depends only on ``(seed, i)``. Both check
at construction that the data can give valid triplets: at least two classes, and no
class with a single image, so a bad data set fails with a message, not a NaN loss later.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fewshot.data.dataset import ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError
from fewshot.miners.base import Triplets
from fewshot.seeding import generator


@dataclass
class MetricBatch:
    """Images ``[n, c, h, w]``, their class labels ``[n]``, and the triplets drawn with them (or ``None``)."""

    images: torch.Tensor
    labels: torch.Tensor
    triplets: Triplets | None = None

    def to(self, device: torch.device | str) -> MetricBatch:
        return MetricBatch(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True),
                           None if self.triplets is None else self.triplets.to(device))


def check_triplet_data(dataset: ImageDataset, min_classes: int = 2) -> None:
    """Raise one clear error unless ``dataset`` has ``min_classes`` classes, each of at least two images."""
    if dataset.num_classes < min_classes:
        raise FewShotError(f"triplets need at least {min_classes} classes (anchor and positive from one, the "
                           f"negative from another), but {dataset.name} has {dataset.num_classes}")
    sizes = dataset.class_sizes
    small = (sizes < 2).nonzero().flatten().tolist()
    if small:
        named = ", ".join(f"{dataset.class_names[i]!r} ({int(sizes[i])})" for i in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        raise FewShotError(f"every class must have at least 2 images to give an anchor and a positive, "
                           f"but in {dataset.name} the classes {named}{more} have fewer; remove those classes")


class RandomTripletSampler:
    """Seed 003's generator: each triplet picks two different classes, two images of the first, one of the second.

    Classes are drawn uniformly (not in proportion to their size), then images uniformly
    within them, anchor and positive distinct.

    Args:
        dataset: the training images.
        batch_size: triplets per batch; a batch holds ``3 * batch_size`` images, anchors then positives then negatives.
        seed: batch ``i`` is drawn from ``generator(seed, i)`` alone.

    Example:
        >>> batch = RandomTripletSampler(dataset, batch_size=64).batch(0)
        >>> batch.images.shape[0], batch.triplets.anchor[:2]
        (192, tensor([0, 1]))
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int = 0, min_classes: int = 2) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FewShotError(f"batch_size (triplets per batch) must be a positive integer, got {batch_size!r}")
        check_triplet_data(dataset, min_classes=min_classes)
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self._sizes = dataset.class_sizes
        self._table = dataset.index_table()[0]

    def indices(self, i: int) -> Triplets:
        """Batch ``i`` as data set indices of its anchors, positives and negatives, ``[batch_size]`` each."""
        g = generator(self.seed, i)
        n, classes = self.batch_size, self.dataset.num_classes
        positive_class = torch.randint(classes, (n,), generator=g)
        negative_class = (positive_class + 1 + torch.randint(classes - 1, (n,), generator=g)) % classes
        size, negative_size = self._sizes[positive_class], self._sizes[negative_class]
        anchor = (torch.rand(n, generator=g) * size).long()
        positive = (anchor + 1 + (torch.rand(n, generator=g) * (size - 1)).long()) % size
        negative = (torch.rand(n, generator=g) * negative_size).long()
        return Triplets(self._table[positive_class, anchor], self._table[positive_class, positive],
                        self._table[negative_class, negative])

    def batch(self, i: int) -> MetricBatch:
        idx = torch.cat(self.indices(i))
        order = torch.arange(3 * self.batch_size)
        return MetricBatch(self.dataset.images_at(idx), self.dataset.labels[idx],
                           Triplets(*order.view(3, self.batch_size)))


class PKSampler:
    """P classes x K images per batch (Hermans, Beyer and Leibe 2017), for in-batch mining.

    Classes are drawn uniformly without replacement, then K distinct images of each.

    Args:
        dataset: the training images.
        classes_per_batch: P, at least 2.
        images_per_class: K, at least 2; every class needs K images.
        seed: batch ``i`` is drawn from ``generator(seed, i)`` alone.

    Example:
        >>> batch = PKSampler(dataset, classes_per_batch=32, images_per_class=4).batch(0)
        >>> batch.images.shape[0], batch.labels[:5]  # K images of a class, then the next class
        (128, tensor([17, 17, 17, 17, 3]))
    """

    def __init__(self, dataset: ImageDataset, classes_per_batch: int, images_per_class: int, seed: int = 0,
                 min_classes: int = 2) -> None:
        for value, what in ((classes_per_batch, "classes_per_batch (P)"), (images_per_class, "images_per_class (K)")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise FewShotError(f"{what} must be an integer >= 2 for a batch to hold same-class and "
                                   f"different-class images, got {value!r}")
        if classes_per_batch < min_classes:
            raise FewShotError(f"this loss needs {min_classes} classes per batch; set classes_per_batch (P) "
                               f">= {min_classes}, got {classes_per_batch}")
        if classes_per_batch > dataset.num_classes:
            raise FewShotError(f"classes_per_batch (P) = {classes_per_batch} but {dataset.name} has "
                               f"{dataset.num_classes} classes; use P <= {dataset.num_classes}")
        check_triplet_data(dataset)
        fewest = int(dataset.class_sizes.min())
        if images_per_class > fewest:
            raise FewShotError(f"images_per_class (K) = {images_per_class} but a class of {dataset.name} has only "
                               f"{fewest} images; use K <= {fewest}")
        self.dataset = dataset
        self.classes_per_batch, self.images_per_class = classes_per_batch, images_per_class
        self._episodes = EpisodeSampler(dataset, classes_per_batch, images_per_class, 0, 1, seed)

    def indices(self, i: int) -> torch.Tensor:
        """Batch ``i`` as data set indices ``[P, K]``."""
        return self._episodes.indices(i)[0]

    def batch(self, i: int) -> MetricBatch:
        idx = self.indices(i).flatten()
        return MetricBatch(self.dataset.images_at(idx), self.dataset.labels[idx])
