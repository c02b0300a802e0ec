"""Embeddings of labelled images with their class names, and which classes the model trained on.

This is what ``fewshot embed`` writes (an ``.npz`` file) and what ``fewshot plot umap``
and the retrieval metrics read.
"""
from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import embed_dataset
from fewshot.files import atomic_write_bytes
from fewshot.methods.base import Method
from fewshot.seeding import generator

KEYS = ("embeddings", "labels", "class_names", "seen", "partitions")


@dataclass
class EmbeddingSet:
    """``embeddings [n, d]`` with ``labels [n]`` in ``0 .. len(class_names) - 1``.

    ``seen[c]`` says whether class ``c`` was among the training classes and
    ``partitions[c]`` which data partition it came from (``train``, ``test`` ...).
    """

    embeddings: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    seen: np.ndarray
    partitions: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` file (atomically)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, embeddings=self.embeddings.astype(np.float32), labels=self.labels.astype(np.int64),
                            class_names=np.array(self.class_names, dtype=str), seen=self.seen.astype(bool),
                            partitions=np.array(self.partitions, dtype=str))
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingSet:
        """Read a file written by :meth:`save` (``fewshot embed``); other files are refused clearly."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in KEYS if k not in data.files]
                if missing:
                    raise FewShotError(f"{path} lacks {', '.join(missing)}: it was not written by `fewshot embed`")
                values = {k: data[k] for k in KEYS}
        except FileNotFoundError:
            raise FewShotError(f"{path} not found; write it with `fewshot embed RUN --out {path}`") from None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise FewShotError(f"{path} is not a readable .npz file ({e}); write it with `fewshot embed`") from None
        embedding_set = cls(values["embeddings"], values["labels"], values["class_names"].tolist(), values["seen"],
                            values["partitions"].tolist())
        embedding_set.check(str(path))
        return embedding_set

    def check(self, source: str = "embeddings") -> None:
        n_classes = len(self.class_names)
        if self.embeddings.ndim != 2 or self.labels.shape != (len(self.embeddings),):
            raise FewShotError(f"{source}: embeddings must be [n, d] and labels [n], got "
                               f"{self.embeddings.shape} and {self.labels.shape}")
        if self.seen.shape != (n_classes,) or len(self.partitions) != n_classes:
            raise FewShotError(f"{source}: seen and partitions must have one entry per class ({n_classes})")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= n_classes):
            raise FewShotError(f"{source}: labels must lie in 0 .. {n_classes - 1}")


def subsample(dataset: ImageDataset, per_class: int, seed: int = 0) -> ImageDataset:
    """At most ``per_class`` images of each class, drawn at random (from ``seed``), in data set order."""
    if per_class < 1:
        raise FewShotError(f"per_class must be at least 1, got {per_class}")
    g = generator(seed)
    keep = [idx[torch.randperm(len(idx), generator=g)[:per_class]] for idx in dataset.class_indices]
    order = torch.cat(keep).sort().values
    return ImageDataset(dataset.images[order], dataset.labels[order], dataset.class_names, dataset.name)


def embed_partitions(
    method: Method,
    partitions: Mapping[str, ImageDataset],
    seen_classes: Sequence[str],
    device: torch.device | str = "cpu",
    per_class: int | None = None,
    seed: int = 0,
) -> EmbeddingSet:
    """Embed every image of each partition (or ``per_class`` of each class) with ``method``.

    Classes named in ``seen_classes`` are marked as seen; partitions must not share classes.

    Example:
        >>> emb = embed_partitions(method, {"train": splits["train"], "test": splits["test"]},
        ...                        splits["train"].class_names)
        >>> emb.save("emb.npz")
    """
    seen_names = set(seen_classes)
    embeddings, labels, names, seen, origin = [], [], [], [], []
    owner: dict[str, str] = {}
    was_training = method.training
    method.eval()
    for partition, dataset in partitions.items():
        shared = sorted(set(dataset.class_names) & set(owner))
        if shared:
            raise FewShotError(f"partitions {owner[shared[0]]} and {partition} share classes (e.g. {shared[0]!r}); "
                               f"embed partitions with disjoint classes, e.g. train and test")
        owner.update(dict.fromkeys(dataset.class_names, partition))
        if per_class is not None:
            dataset = subsample(dataset, per_class, seed)
        embeddings.append(embed_dataset(method, dataset, torch.device(device), query=True).cpu().numpy())
        labels.append(dataset.labels.numpy() + len(names))
        names.extend(dataset.class_names)
        seen.extend(name in seen_names for name in dataset.class_names)
        origin.extend([partition] * dataset.num_classes)
    method.train(was_training)
    return EmbeddingSet(np.concatenate(embeddings), np.concatenate(labels), names, np.array(seen, dtype=bool), origin)
