"""The standard triplet margin loss (Weinberger and Saul 2009; Schroff et al. 2015, FaceNet eq. 2)."""
from __future__ import annotations

import torch

from fewshot.distances import Distance
from fewshot.losses.base import MetricLoss, check_margin, require_triplets
from fewshot.losses.registry import LOSSES
from fewshot.miners.base import Triplets


@LOSSES.register("triplet_margin")
class TripletMarginLoss(MetricLoss):
    """``[d(a, p) - d(a, n) + m]_+``, averaged over the triplets.

    With the batch-hard miner this is Hermans et al.'s (2017) batch-hard triplet loss.

    Args:
        distance: a distance or its name (default ``euclidean``).
        margin: ``m``.

    Example:
        >>> loss = TripletMarginLoss(margin=1.0)
        >>> x = torch.tensor([[0.0], [1.0], [1.5]])
        >>> loss(x, torch.tensor([0, 0, 1]), Triplets(*torch.tensor([[0], [1], [2]])))
        tensor(0.5000)
    """

    def __init__(self, distance: Distance | str | None = None, margin: float = 0.2) -> None:
        super().__init__(distance)
        self.margin = check_margin(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Triplets | None) -> torch.Tensor:
        d_ap, d_an, _ = self.triplet_distances(embeddings, require_triplets(triplets, "triplet_margin"))
        losses = (d_ap - d_an + self.margin).clamp_min(0)
        return losses.mean() if losses.numel() else losses.sum()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
