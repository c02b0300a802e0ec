"""Sequence episodes for memory-augmented networks (Santoro et al. 2016, section 4.1).

An episode draws N classes, gives them the labels ``0 .. N-1`` in random order, and shows
``instances`` images of each class in one shuffled sequence. At step ``t`` the network
sees the image ``x_t`` together with the one-hot label ``y_{t-1}`` of the previous step
(zeros at ``t = 0``) and must output ``y_t``: it can only be right about a class after it
has been told its label once, so it must store and retrieve within the episode.

Batches are built as tensors, all episodes of a batch at once; batch ``i`` depends only
on ``(seed, i)`` (:func:`fewshot.seeding.generator`). Santoro's augmentation
(:class:`SantoroAugmentation`) is done the same way, one ``grid_sample`` per batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.seeding import generator


@dataclass
class SequenceBatch:
    """A batch of sequence episodes.

    Attributes:
        images: ``[batch, time, c, h, w]`` float images in [0, 1].
        labels: ``[batch, time]`` episode labels ``y_t`` in ``0 .. n_classes - 1`` (the targets).
        classes: ``[batch, n_classes]`` dataset class index of each episode label (-1 if unused).
        n_classes: classes per episode N.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: torch.Tensor
    n_classes: int

    @property
    def previous_labels(self) -> torch.Tensor:
        """One-hot ``y_{t-1}`` at step ``t``, zeros at ``t = 0``: ``[batch, time, n_classes]``."""
        one_hot = F.one_hot(self.labels, self.n_classes).to(self.images.dtype)
        return F.pad(one_hot[:, :-1], (0, 0, 1, 0))

    @property
    def inputs(self) -> torch.Tensor:
        """The network input ``[x_t, y_{t-1}]``: ``[batch, time, c*h*w + n_classes]``."""
        return torch.cat([self.images.flatten(2), self.previous_labels], dim=-1)

    @property
    def instances(self) -> torch.Tensor:
        """``[batch, time]``: the how-many-th appearance of its class step ``t`` is (1 = first)."""
        return instance_numbers(self.labels, self.n_classes)

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True),
                             self.classes.to(device, non_blocking=True), self.n_classes)


def instance_numbers(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """For labels ``[..., time]``, the running count of each step's label (1-based)."""
    counts = F.one_hot(labels, n_classes).cumsum(-2)
    return counts.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def check_min_classes(min_classes: int | None, n_classes: int) -> None:
    """Raise one clear error unless ``min_classes`` is ``None`` or an integer in ``1 .. n_classes``."""
    if min_classes is not None and not (isinstance(min_classes, int) and 1 <= min_classes <= n_classes):
        raise FewShotError(f"min_classes must be an integer from 1 to n_classes ({n_classes}), got {min_classes!r}; "
                           f"or None for episodes of n_classes classes only")


@dataclass(frozen=True)
class SantoroAugmentation:
    """Santoro et al. (2016) augmentation, applied to whole batches of sequences.

    Each class of an episode is rotated by a random multiple of 90 degrees (all its images
    alike, so the rotated character acts as a new class), and every image gets its own
    small random rotation in ``[-max_rotation, max_rotation]`` degrees and translation in
    ``[-max_shift, max_shift]`` pixels. Pixels shifted in from outside are background (0).

    Args:
        class_rotations: rotate classes by random multiples of 90 degrees.
        max_rotation: largest per-image rotation, in degrees.
        max_shift: largest per-image translation, in pixels.
    """

    class_rotations: bool = True
    max_rotation: float = 10.0
    max_shift: float = 2.0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int,
                 g: torch.Generator) -> torch.Tensor:
        """Augment ``images [batch, time, c, h, w]`` whose episode labels are ``labels [batch, time]``."""
        b, t, c, h, w = images.shape
        quarter_turns = torch.randint(0, 4, (b, n_classes), generator=g) if self.class_rotations \
            else torch.zeros(b, n_classes, dtype=torch.long)
        angle = quarter_turns.gather(1, labels).double() * (math.pi / 2)
        angle = angle + (torch.rand(b, t, generator=g, dtype=torch.float64) * 2 - 1) * math.radians(self.max_rotation)
        shift = (torch.rand(b, t, 2, generator=g, dtype=torch.float64) * 2 - 1) * self.max_shift
        shift = shift * torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64)  # pixels -> [-1, 1] units
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, shift[..., 0]], -1),
                             torch.stack([sin, cos, shift[..., 1]], -1)], -2)
        flat = images.reshape(b * t, c, h, w)
        grid = F.affine_grid(theta.reshape(b * t, 2, 3).to(images.dtype), [b * t, c, h, w], align_corners=False)
        out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.reshape(b, t, c, h, w)


class SequenceEpisodes:
    """Draws batches of sequence episodes from a labelled image set.

    Args:
        dataset: the images; classes of the background set for training, of the evaluation set to test.
        n_classes: classes per episode N (Santoro: 5 or 15).
        instances: images shown of each class; an episode has ``n_classes * instances`` steps.
        batch_size: episodes per batch.
        seed: batch ``i`` depends only on ``(seed, i)``.
        augmentation: transform applied to each batch, e.g. :class:`SantoroAugmentation`; with
            augmentation, a class with fewer than ``instances`` images repeats some of them
            (each repeat differently transformed).
        min_classes: with a value, each batch shows ``m`` classes, ``m`` drawn uniformly from
            ``min_classes .. n_classes`` (the same for all episodes of the batch), labelled with a
            random ``m`` of the ``n_classes`` labels: shorter, easier episodes mixed in, so that a
            model of many classes meets the binding task in small doses first. ``None``: always
            ``n_classes`` classes.

    Raises:
        FewShotError: if the dataset has fewer than ``n_classes`` classes, or (without
            augmentation) a class has fewer than ``instances`` images.

    Example:
        >>> episodes = SequenceEpisodes(splits["train"], n_classes=5, instances=10, batch_size=16)
        >>> batch = episodes.batch(0)
        >>> batch.inputs.shape  # 20x20 images + 5 label units
        torch.Size([16, 50, 405])
    """

    def __init__(self, dataset: ImageDataset, n_classes: int = 5, instances: int = 10, batch_size: int = 16,
                 seed: int = 0, augmentation: SantoroAugmentation | None = None,
                 min_classes: int | None = None) -> None:
        for value, what in ((n_classes, "n_classes"), (instances, "instances"), (batch_size, "batch_size")):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FewShotError(f"sequence episodes: {what} must be a positive integer, got {value!r}")
        check_min_classes(min_classes, n_classes)
        if n_classes > dataset.num_classes:
            raise FewShotError(
                f"episodes of {n_classes} classes need {n_classes} classes but {dataset.name} has "
                f"{dataset.num_classes}; use at most {dataset.num_classes} classes or a set with more classes")
        sizes = dataset.class_sizes
        if int(sizes.min()) < 1:
            empty = [dataset.class_names[i] for i in (sizes == 0).nonzero().flatten().tolist()[:5]]
            raise FewShotError(f"{dataset.name} has classes without images ({', '.join(empty)}); remove them")
        if augmentation is None and instances > int(sizes.min()):
            small = (sizes < instances).nonzero().flatten().tolist()
            named = ", ".join(f"{dataset.class_names[i]!r} ({int(sizes[i])})" for i in small[:5])
            more = f" and {len(small) - 5} more" if len(small) > 5 else ""
            raise FewShotError(
                f"episodes of {instances} instances per class need {instances} images of each class, but in "
                f"{dataset.name} the classes {named}{more} have fewer; use at most {int(sizes.min())} instances, "
                f"or turn on augmentation so that images may repeat")
        self.dataset, self.n_classes, self.instances = dataset, n_classes, instances
        self.batch_size, self.seed, self.augmentation = batch_size, seed, augmentation
        self.min_classes = min_classes
        self._sizes = sizes
        self._table, self._invalid = dataset.index_table()

    def indices(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
        """Batch ``i`` as dataset indices ``[batch, time]``, labels ``[batch, time]``, classes ``[batch, N]``.

        ``classes[e, y]`` is the dataset class shown with label ``y`` in episode ``e`` (-1: a
        label the episode does not use, with ``min_classes``). Also returns the generator,
        positioned after these draws, for the augmentation.
        """
        g = generator(self.seed, i)
        b, n, k = self.batch_size, self.n_classes, self.instances
        m = n if self.min_classes is None else int(torch.randint(self.min_classes, n + 1, (), generator=g))
        shown = torch.rand(b, self.dataset.num_classes, generator=g).argsort(1)[:, :m]
        keys = torch.rand(b, m, self._table.shape[1], generator=g).masked_fill_(self._invalid[shown], 2.0)
        order_in_class = keys.argsort(-1)
        picks = order_in_class.gather(-1, torch.arange(k).expand(b, m, k) % self._sizes[shown].unsqueeze(-1))
        indices = self._table[shown].gather(-1, picks).flatten(1)  # [b, m*k], class by class
        order = torch.rand(b, m * k, generator=g).argsort(1)
        slots = torch.arange(m).repeat_interleave(k).expand(b, -1).gather(1, order)
        if self.min_classes is None:
            return indices.gather(1, order), slots, shown, g
        label_of = torch.rand(b, n, generator=g).argsort(1)[:, :m]  # the labels of the m shown classes
        classes = torch.full((b, n), -1, dtype=shown.dtype).scatter_(1, label_of, shown)
        return indices.gather(1, order), label_of.gather(1, slots), classes, g

    def batch(self, i: int) -> SequenceBatch:
        """Batch ``i`` of episodes, augmented if an augmentation was given."""
        indices, labels, classes, g = self.indices(i)
        images = self.dataset.images_at(indices)
        if self.augmentation is not None:
            images = self.augmentation(images, labels, self.n_classes, g)
        return SequenceBatch(images, labels, classes, self.n_classes)
