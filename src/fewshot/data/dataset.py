"""The labelled image set every loader returns and every sampler draws from."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from fewshot.errors import FewShotError
from fewshot.seeding import generator


class ImageDataset(Dataset):
    """Images of several classes, decoded once and held as one uint8 tensor.

    Args:
        images: uint8 tensor ``[n, channels, height, width]``; bright strokes on dark.
        labels: int64 tensor ``[n]`` with values ``0 .. len(class_names) - 1``.
        class_names: one name per class, e.g. ``"Latin/character03"``.
        name: a short description used in messages, e.g. ``"omniglot/lake/test"``.

    ``dataset[i]`` returns ``(float image in [0, 1], label)``, so the set works with a
    PyTorch ``DataLoader``; :meth:`images_at` does the same for many indices at once,
    which is what the samplers use (no per-image Python work in a training loop).

    Example:
        >>> ds = ImageDataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8),
        ...                   torch.tensor([0, 0, 1, 1]), ["a", "b"])
        >>> ds.num_classes, ds.image_shape
        (2, (1, 28, 28))
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: Sequence[str],
        name: str = "dataset",
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor [n, c, h, w], got {images.dtype} {tuple(images.shape)}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError("labels must lie in 0 .. len(class_names) - 1")
        self.images = images
        self.labels = labels
        self.class_names = list(class_names)
        self.name = name
        self._class_indices: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, {len(self)} images, {self.num_classes} classes, {self.image_shape})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def class_indices(self) -> list[torch.Tensor]:
        """For each class, the indices of its images (computed once)."""
        if self._class_indices is None:
            order = torch.argsort(self.labels, stable=True)
            counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
            self._class_indices = list(torch.split(order, counts))
        return self._class_indices

    def index_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(table, padding)``: row ``c`` of ``table`` lists the images of class ``c``, padded to the
        largest class; ``padding`` marks the padded cells. Samplers draw from it in one vectorised step."""
        sizes = self.class_sizes
        table = torch.zeros(self.num_classes, int(sizes.max()), dtype=torch.long)
        for c, idx in enumerate(self.class_indices):
            table[c, : len(idx)] = idx
        return table, torch.arange(table.shape[1])[None, :] >= sizes[:, None]

    def alphabets(self) -> dict[str, torch.Tensor]:
        """The classes of each alphabet, in order of first appearance.

        Class names ``"<Alphabet>/<character>"`` group by alphabet, and ``"<Alphabet>/<character>/rotDDD"``
        (the Vinyals split, rotated classes) by alphabet and rotation: one alphabet as drawn, or turned. A
        name without ``/`` is a group of its own.
        """
        groups: dict[str, list[int]] = {}
        for c, name in enumerate(self.class_names):
            parts = name.split("/")
            groups.setdefault("/".join(parts[:1] + parts[2:]), []).append(c)
        return {name: torch.tensor(members) for name, members in groups.items()}

    @property
    def class_sizes(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    def images_at(self, indices: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] for a tensor of indices of any shape: ``[*indices.shape, c, h, w]``."""
        flat = self.images[indices.reshape(-1)].float().div_(255.0)
        return flat.reshape(*indices.shape, *self.image_shape)

    def subset(self, classes: Sequence[int] | Sequence[str], name: str | None = None) -> ImageDataset:
        """The images of some classes (by index or name), relabelled ``0 .. len(classes) - 1``."""
        ids = [self._class_id(c) for c in classes]
        if len(set(ids)) != len(ids):
            raise FewShotError(f"subset of {self.name}: a class is listed twice")
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(ids, dtype=torch.long)] = torch.arange(len(ids))
        new_labels = remap[self.labels]
        keep = new_labels >= 0
        return ImageDataset(
            self.images[keep],
            new_labels[keep],
            [self.class_names[i] for i in ids],
            name or f"{self.name}[{len(ids)} classes]",
        )

    def _class_id(self, c: int | str) -> int:
        if isinstance(c, str):
            try:
                return self.class_names.index(c)
            except ValueError:
                raise FewShotError(f"{self.name} has no class {c!r}") from None
        if not 0 <= int(c) < self.num_classes:
            raise FewShotError(f"{self.name} has classes 0 .. {self.num_classes - 1}, not {c}")
        return int(c)

    def split_images(self, fraction: float, seed: int, *keys: int) -> tuple[ImageDataset, ImageDataset]:
        """Each class's images shuffled (from ``(seed, *keys, class)``) and cut at ``fraction``:
        ``(first part, rest)``, both with all classes, e.g. training images and held-out images of seen classes."""
        first, rest = [], []
        for c, idx in enumerate(self.class_indices):
            order = idx[torch.randperm(len(idx), generator=generator(seed, *keys, c))]
            cut = round(fraction * len(idx))
            first.append(order[:cut])
            rest.append(order[cut:])

        def part(indices: list[torch.Tensor], name: str) -> ImageDataset:
            idx = torch.cat(indices).sort().values
            return ImageDataset(self.images[idx], self.labels[idx], self.class_names, f"{self.name}/{name}")

        return part(first, "fit"), part(rest, "held-out")

    def with_rotated_classes(self, angles: Sequence[int] = (0, 90, 180, 270)) -> ImageDataset:
        """Each class once per rotation angle, each rotation a class of its own.

        This is the class augmentation of Vinyals et al. (2016) and Snell et al. (2017)
        for Omniglot. Class names get a ``/rotDDD`` suffix.
        """
        if self.image_shape[1] != self.image_shape[2]:
            raise FewShotError("rotated classes need square images")
        images, labels, names = [], [], []
        for r, angle in enumerate(angles):
            if angle % 90:
                raise FewShotError(f"rotation angles must be multiples of 90, got {angle}")
            images.append(torch.rot90(self.images, k=angle // 90, dims=(2, 3)))
            labels.append(self.labels * len(angles) + r)
        for n in self.class_names:
            names.extend(f"{n}/rot{a:03d}" for a in angles)
        return ImageDataset(torch.cat(images), torch.cat(labels), names, f"{self.name}+rotations")

    def with_mirrored_classes(self) -> ImageDataset:
        """Each class twice, as drawn and mirrored left to right, the mirror a class of its own.

        The same class augmentation as :meth:`with_rotated_classes`, by reflection: a
        mirrored character is a new character. Class names get a ``/mirror`` suffix on the
        mirrored classes, whose labels follow the originals'.
        """
        names = list(self.class_names) + [f"{n}/mirror" for n in self.class_names]
        return ImageDataset(torch.cat([self.images, self.images.flip(-1)]),
                            torch.cat([self.labels, self.labels + self.num_classes]), names, f"{self.name}+mirrors")

    def check_episode(self, n_way: int, k_shot: int, n_query: int) -> None:
        """Raise one clear error if N-way K-shot Q-query episodes cannot be drawn from this set."""
        for value, what in ((n_way, "ways (N)"), (k_shot, "shots (K)"), (n_query, "queries (Q)")):
            if not isinstance(value, int) or value < (0 if what == "queries (Q)" else 1):
                raise FewShotError(f"number of {what} must be a positive integer, got {value!r}")
        if n_way > self.num_classes:
            raise FewShotError(
                f"{n_way}-way episodes need {n_way} classes but {self.name} has {self.num_classes}; "
                f"use at most {self.num_classes} ways or a set with more classes"
            )
        need = k_shot + n_query
        sizes = self.class_sizes
        small = (sizes < need).nonzero().flatten().tolist()
        if small:
            fewest = int(sizes.min())
            named = ", ".join(f"{self.class_names[i]!r} ({int(sizes[i])})" for i in small[:5])
            more = f" and {len(small) - 5} more" if len(small) > 5 else ""
            raise FewShotError(
                f"{k_shot}-shot {n_query}-query episodes need {need} images per class, but in {self.name} "
                f"the classes {named}{more} have fewer; use shots + queries <= {fewest}, "
                f"or remove those classes"
            )


@dataclass
class Episode:
    """One N-way K-shot task: labelled support images and query images to classify.

    Labels are episode labels ``0 .. n_way - 1``; ``classes`` maps them back to the
    dataset's class indices.

    Example:
        >>> episode = EpisodeSampler(splits["test"], 5, 1, 15, 1).episode(0)
        >>> episode.n_way, episode.support.shape, episode.query.shape
        (5, torch.Size([5, 1, 28, 28]), torch.Size([75, 1, 28, 28]))
    """

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    classes: torch.Tensor

    @property
    def n_way(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Episode:
        return Episode(*(t.to(device, non_blocking=True) for t in
                         (self.support, self.support_labels, self.query, self.query_labels, self.classes)))
