"""What a metric-learning loss is: a batch of embeddings, their labels and its triplets in, a scalar out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from fewshot.distances import Distance, get_distance
from fewshot.errors import FewShotError
from fewshot.miners.base import Triplets


class MetricLoss(nn.Module, ABC):
    """Base class: ``loss(embeddings [n, d], labels [n], triplets) -> scalar``.

    ``triplets`` index the batch (from a sampler or a miner, :mod:`fewshot.miners`);
    losses on pairs take the pairs of each triplet, and the histogram loss, which uses
    every pair of the batch, ignores them (``uses_triplets = False``). A loss over no
    triplets is zero, so a miner that finds nothing gives no update rather than NaN.

    Args:
        distance: a :class:`~fewshot.distances.Distance` or its name; ``None``: ``default_distance``.

    Example:
        >>> loss = TripletMarginLoss(distance="euclidean")
        >>> value = loss(embeddings, labels, BatchHardMiner("euclidean")(embeddings, labels))
    """

    default_distance: ClassVar[str] = "euclidean"
    uses_triplets: ClassVar[bool] = True
    min_classes: ClassVar[int] = 2  # classes a batch needs for the loss to be defined

    def __init__(self, distance: Distance | str | None = None) -> None:
        super().__init__()
        distance = distance or self.default_distance
        self.distance = get_distance(distance) if isinstance(distance, str) else distance

    @abstractmethod
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Triplets | None) -> torch.Tensor:
        """The loss of one batch."""

    def triplet_distances(self, embeddings: torch.Tensor, triplets: Triplets) -> tuple[torch.Tensor, ...]:
        """``d(a, p)``, ``d(a, n)`` and ``d(p, n)`` of each triplet, ``[t]`` each."""
        a, p, n = (embeddings[i] for i in triplets)
        return self.distance.pairwise(a, p), self.distance.pairwise(a, n), self.distance.pairwise(p, n)


def check_margin(margin: float, what: str = "margin") -> float:
    """``margin`` if it is a number >= 0, else a :class:`FewShotError`."""
    if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
        raise FewShotError(f"the {what} must be a number >= 0, got {margin!r}")
    return float(margin)


def require_triplets(triplets: Triplets | None, loss: str) -> Triplets:
    if triplets is None:
        raise FewShotError(f"the {loss} loss needs triplets: draw random triplets or choose a miner")
    return triplets
