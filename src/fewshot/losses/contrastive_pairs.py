"""The contrastive loss on the pairs of mined or sampled triplets.

The loss itself is the one the Siamese networks use (:mod:`fewshot.losses.contrastive`);
this adapter feeds it the pairs of each triplet: ``(a, p)`` labelled same, ``(a, n)``
labelled different, so it can be trained with the same samplers and miners as the
triplet losses.
"""
from __future__ import annotations

import torch

from fewshot.distances import Distance
from fewshot.losses.base import MetricLoss, check_margin, require_triplets
from fewshot.losses.contrastive import contrastive_loss
from fewshot.losses.registry import LOSSES
from fewshot.miners.base import Triplets


@LOSSES.register("contrastive")
class TripletPairsContrastiveLoss(MetricLoss):
    """Mean of ``y d^2 + (1 - y) [m - d]_+^2`` over the pairs ``(a, p)`` (y = 1) and ``(a, n)`` (y = 0).

    Args:
        distance: a distance or its name (default ``euclidean``).
        margin: ``m``: different pairs closer than this are pushed apart.

    Example:
        >>> loss = TripletPairsContrastiveLoss(margin=2.0)
        >>> x = torch.tensor([[0.0], [1.0], [1.5]])
        >>> loss(x, torch.tensor([0, 0, 1]), Triplets(*torch.tensor([[0], [1], [2]])))
        tensor(0.6250)
    """

    def __init__(self, distance: Distance | str | None = None, margin: float = 1.0) -> None:
        super().__init__(distance)
        self.margin = check_margin(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Triplets | None) -> torch.Tensor:
        d_ap, d_an, _ = self.triplet_distances(embeddings, require_triplets(triplets, "contrastive"))
        if not d_ap.numel():
            return d_ap.sum()
        same = torch.cat([torch.ones_like(d_ap), torch.zeros_like(d_an)])
        return contrastive_loss(torch.cat([d_ap, d_an]), same, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
