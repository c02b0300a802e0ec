"""The contrastive loss (Hadsell, Chopra and LeCun 2006), as in seed 000's Siamese network.

For a pair at distance ``d`` with label ``y`` (1: same class, 0: different),
``L = y d^2 + (1 - y) max(m - d, 0)^2``: same pairs are pulled together, different
pairs pushed until they are at least the margin ``m`` apart.
"""
from __future__ import annotations

import torch
from torch import nn

from fewshot.distances import Distance, get_distance


def contrastive_loss(distances: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                     reduction: str = "mean") -> torch.Tensor:
    """``y d^2 + (1 - y) max(m - d, 0)^2`` per pair (``distances`` and ``labels`` of equal shape).

    ``reduction``: ``"mean"`` over pairs (default) or ``"none"`` (one value per pair).

    Example:
        >>> contrastive_loss(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), margin=1.0, reduction="none")
        tensor([0.2500, 0.2500])
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    labels = labels.to(distances.dtype)
    same = labels * distances.pow(2)
    different = (1 - labels) * (margin - distances).clamp_min(0).pow(2)
    losses = same + different
    return losses.mean() if reduction == "mean" else losses


class ContrastiveLoss(nn.Module):
    """Contrastive loss on pairs of embeddings, with a distance from :mod:`fewshot.distances`.

    Args:
        margin: different pairs closer than this are penalised.
        distance: a :class:`~fewshot.distances.Distance` or its name (default ``euclidean``,
            floored at zero so its gradient stays finite).

    Example:
        >>> loss = ContrastiveLoss(margin=1.0)
        >>> loss(torch.randn(8, 16), torch.randn(8, 16), torch.tensor([1., 0.] * 4)).shape
        torch.Size([])
    """

    def __init__(self, margin: float = 1.0, distance: Distance | str = "euclidean") -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"the contrastive margin must be positive, got {margin}")
        self.margin = margin
        self.distance = get_distance(distance) if isinstance(distance, str) else distance

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the pairs ``(a[i], b[i])``, ``a`` and ``b`` of shape ``[n, d]``, labels ``[n]``."""
        return contrastive_loss(self.distance.pairwise(a, b), labels, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
