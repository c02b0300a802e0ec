"""What a miner is: embeddings and labels of a batch in, the triplets to train on out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from fewshot.distances import Distance, get_distance


class Triplets(NamedTuple):
    """Index tensors into a batch: ``anchor[i]`` and ``positive[i]`` share a class, ``negative[i]`` does not.

    Example:
        >>> triplets = AllTripletsMiner()(torch.zeros(3, 2), torch.tensor([0, 0, 1]))
        >>> triplets.anchor, triplets.positive, triplets.negative
        (tensor([0, 1]), tensor([1, 0]), tensor([2, 2]))
    """

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def to(self, device: torch.device | str) -> Triplets:
        return Triplets(*(t.to(device, non_blocking=True) for t in self))


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` boolean ``[n, n]`` masks: same label (not self), and different label.

    Example:
        >>> positive, negative = label_masks(torch.tensor([0, 0, 1]))
        >>> positive[0].tolist(), negative[0].tolist()
        ([False, True, False], [False, False, True])
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return positive, ~same


class Miner(ABC):
    """Base class of the in-batch miners: ``miner(embeddings [n, d], labels [n]) -> Triplets``.

    Mining only selects indices, so it runs without gradients, on the batch at once
    (no Python loop over its elements). Distances are those of the loss being trained.

    Args:
        distance: a :class:`~fewshot.distances.Distance` or its name.

    Example:
        >>> triplets = BatchHardMiner("euclidean")(embeddings, labels)
        >>> len(triplets.anchor) == len(labels)  # one hardest triplet per anchor with a positive
    """

    def __init__(self, distance: Distance | str = "euclidean") -> None:
        self.distance = get_distance(distance) if isinstance(distance, str) else distance

    @torch.no_grad()
    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        return self.mine(embeddings.detach().float(), labels)

    @abstractmethod
    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        """The triplets of this batch, by the miner's definition."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(distance={type(self.distance).__name__})"
