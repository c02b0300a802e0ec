"""The softmax-ratio triplet loss of seed 003 (the IBM Research loss of its Keras notebook)."""
from __future__ import annotations

import torch

from fewshot.losses.base import MetricLoss, require_triplets
from fewshot.losses.registry import LOSSES
from fewshot.miners.base import Triplets


@LOSSES.register("softmax_ratio")
class SoftmaxRatioLoss(MetricLoss):
    """``(p+, p-) = softmax(d+, d-)`` with ``d+ = d(a, p)``, ``d- = d(a, n)``; loss = mean ``|p+| + |1 - p-|``.

    ``p+`` is the share of the positive distance: the loss falls from 2 towards 0 as the
    negative moves farther than the positive; it equals ``2 sigmoid(d+ - d-)``, so only the
    gap between the two distances matters, and it saturates once the gap is large.

    Args:
        distance: a distance or its name (default ``l1``, as in the seed).

    Example:
        >>> loss = SoftmaxRatioLoss()
        >>> x = torch.tensor([[0.0], [1.0], [1.0]])
        >>> loss(x, torch.tensor([0, 0, 1]), Triplets(*torch.tensor([[0], [1], [2]])))
        tensor(1.)
    """

    default_distance = "l1"

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Triplets | None) -> torch.Tensor:
        d_pos, d_neg, _ = self.triplet_distances(embeddings, require_triplets(triplets, "softmax_ratio"))
        p_pos, p_neg = torch.softmax(torch.stack([d_pos, d_neg]), dim=0)
        losses = p_pos.abs() + (1 - p_neg).abs()
        return losses.mean() if losses.numel() else losses.sum()
