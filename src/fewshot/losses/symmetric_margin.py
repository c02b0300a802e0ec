"""The symmetric margin triplet loss of the triplet-network slide (seed 002)."""
from __future__ import annotations

import torch

from fewshot.distances import Distance
from fewshot.losses.base import MetricLoss, check_margin, require_triplets
from fewshot.losses.registry import LOSSES
from fewshot.miners.base import Triplets


@LOSSES.register("symmetric_margin")
class SymmetricMarginLoss(MetricLoss):
    """``[m + d(a, p) - d(a, n)]_+ + [m + d(a, p) - d(p, n)]_+``, averaged over the triplets.

    Both images of the positive pair are pushed away from the negative, not the anchor only.

    Args:
        distance: a distance or its name (default ``euclidean``).
        margin: ``m``.

    Example:
        >>> loss = SymmetricMarginLoss(margin=1.0)
        >>> x = torch.tensor([[0.0], [1.0], [1.5]])
        >>> loss(x, torch.tensor([0, 0, 1]), Triplets(*torch.tensor([[0], [1], [2]])))
        tensor(2.)
    """

    def __init__(self, distance: Distance | str | None = None, margin: float = 0.2) -> None:
        super().__init__(distance)
        self.margin = check_margin(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Triplets | None) -> torch.Tensor:
        d_ap, d_an, d_pn = self.triplet_distances(embeddings, require_triplets(triplets, "symmetric_margin"))
        losses = (self.margin + d_ap - d_an).clamp_min(0) + (self.margin + d_ap - d_pn).clamp_min(0)
        return losses.mean() if losses.numel() else losses.sum()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
