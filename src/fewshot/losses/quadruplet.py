"""The quadruplet loss (Chen, Chen, Zhang and Huang 2017, "Beyond triplet loss", eq. 6)."""
from __future__ import annotations

import torch

from fewshot.distances import Distance
from fewshot.losses.base import MetricLoss, check_margin, require_triplets
from fewshot.losses.registry import LOSSES
from fewshot.miners.base import Triplets


@LOSSES.register("quadruplet")
class QuadrupletLoss(MetricLoss):
    """The triplet term plus a term that pushes positive pairs closer than *unrelated* negative pairs.

    For a triplet ``(i, j, k)`` (``y_i = y_j != y_k``) and every ``l`` in the batch with
    ``y_l != y_i`` and ``y_l != y_k``:
    ``mean_ijk [d(i, j) - d(i, k) + m1]_+ + mean_ijkl [d(i, j) - d(l, k) + m2]_+``.
    The second term, with ``m2 < m1``, asks for a smaller intra-class than inter-class
    spread across the batch, not only around each anchor. The paper's ``d`` is a squared
    distance, hence the default. Batches need three classes.

    Args:
        distance: a distance or its name (default ``squared_euclidean``).
        margin: ``m1``, the margin of the triplet term.
        second_margin: ``m2``, the margin of the negative-pair term.

    Example:
        >>> loss = QuadrupletLoss("euclidean", margin=1.0, second_margin=0.5)
        >>> x = torch.tensor([[0.0], [1.0], [1.5], [2.0]])
        >>> loss(x, torch.tensor([0, 0, 1, 2]), Triplets(*torch.tensor([[0], [1], [2]])))
        tensor(1.5000)
    """

    default_distance = "squared_euclidean"
    min_classes = 3

    def __init__(self, distance: Distance | str | None = None, margin: float = 1.0,
                 second_margin: float = 0.5) -> None:
        super().__init__(distance)
        self.margin = check_margin(margin)
        self.second_margin = check_margin(second_margin, "second margin")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Triplets | None) -> torch.Tensor:
        anchor, _, negative = require_triplets(triplets, "quadruplet")
        d_ap, d_an, _ = self.triplet_distances(embeddings, triplets)
        if not d_ap.numel():
            return d_ap.sum()
        triplet_term = (d_ap - d_an + self.margin).clamp_min(0).mean()
        d_negative_pairs = self.distance.matrix(embeddings, embeddings)[negative]  # [t, n]: d(k, l)
        unrelated = (labels.unsqueeze(0) != labels[anchor].unsqueeze(1)) & \
                    (labels.unsqueeze(0) != labels[negative].unsqueeze(1))
        pair_term = (d_ap.unsqueeze(1) - d_negative_pairs + self.second_margin).clamp_min(0)[unrelated]
        return triplet_term + (pair_term.mean() if pair_term.numel() else pair_term.sum())

    def extra_repr(self) -> str:
        return f"margin={self.margin}, second_margin={self.second_margin}"
