"""The histogram loss (Ustinova and Lempitsky 2016, "Learning Deep Embeddings with Histogram Loss")."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.distances import CosineDistance, Distance, EuclideanDistance, SquaredEuclideanDistance
from fewshot.errors import FewShotError
from fewshot.losses.base import MetricLoss
from fewshot.losses.registry import LOSSES
from fewshot.miners.base import Triplets, label_masks

# The largest distance between two unit vectors, for the distances the loss can bin.
MAX_DISTANCE = {CosineDistance: 2.0, EuclideanDistance: 2.0, SquaredEuclideanDistance: 4.0}


@LOSSES.register("histogram")
class HistogramLoss(MetricLoss):
    """The probability that a random negative pair is closer than a random positive pair.

    Embeddings are L2-normalised (section 3 of the paper), so distances lie in
    ``[0, D]``. The distances of all positive and all negative pairs of the batch are
    soft-binned into histograms ``h+`` and ``h-`` over ``R`` evenly spaced nodes ``t_r``,
    each pair splitting its weight linearly between its two nearest nodes (eq. 2), and
    ``L = sum_r h-_r sum_{q >= r} h+_q`` (eq. 4, written for distances instead of
    similarities: with cosine distance it is the paper's loss). It has no margin to tune;
    mined triplets are not used.

    Args:
        distance: ``cosine`` (default, the paper's), ``euclidean`` or ``squared_euclidean``.
        bins: ``R``, the number of histogram nodes.

    Example:
        >>> loss = HistogramLoss(bins=3)
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> loss(x, torch.tensor([0, 0, 1]), None)
        tensor(0.5000)
    """

    default_distance = "cosine"
    uses_triplets = False

    def __init__(self, distance: Distance | str | None = None, bins: int = 101) -> None:
        super().__init__(distance)
        if type(self.distance) not in MAX_DISTANCE:
            raise FewShotError(f"the histogram loss bins distances between unit vectors, so it needs a bounded "
                               f"distance: cosine, euclidean or squared_euclidean, not {type(self.distance).__name__}")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise FewShotError(f"the histogram loss needs at least 2 bins, got {bins!r}")
        self.bins = bins
        self.max_distance = MAX_DISTANCE[type(self.distance)]

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Triplets | None) -> torch.Tensor:
        unit = F.normalize(embeddings, dim=-1)
        distances = self.distance.matrix(unit, unit)
        positive, negative = label_masks(labels)
        upper = torch.ones_like(positive).triu(1)
        if not (positive & upper).any() or not (negative & upper).any():
            raise FewShotError("the histogram loss needs a positive and a negative pair in every batch: "
                               "draw at least two classes with at least two images each")
        h_pos = self.histogram(distances[positive & upper])
        h_neg = self.histogram(distances[negative & upper])
        positive_at_or_beyond = h_pos.flip(0).cumsum(0).flip(0)  # sum_{q >= r} h+_q
        return (h_neg * positive_at_or_beyond).sum()

    def histogram(self, distances: torch.Tensor) -> torch.Tensor:
        """Normalised soft histogram ``[bins]`` of ``distances`` (linear interpolation between nodes)."""
        step = self.max_distance / (self.bins - 1)
        nodes = torch.arange(self.bins, device=distances.device, dtype=distances.dtype) * step
        position = distances.clamp(0, self.max_distance).unsqueeze(1)
        weights = (1 - (position - nodes).abs() / step).clamp_min(0)
        return weights.sum(0) / len(distances)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"
