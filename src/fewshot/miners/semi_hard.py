"""Semi-hard mining (Schroff, Kalenichenko and Philbin 2015, FaceNet, section 3.2)."""
from __future__ import annotations

import torch

from fewshot.distances import Distance
from fewshot.errors import FewShotError
from fewshot.miners.base import Miner, Triplets, label_masks
from fewshot.miners.registry import MINERS


@MINERS.register("semi_hard")
class SemiHardMiner(Miner):
    """Every ``(a, p, n)`` whose negative is farther than the positive but within the margin.

    ``d(a, p) < d(a, n) < d(a, p) + margin``: the triplets that still violate the margin
    without being the hardest, which FaceNet found to train more stably. A batch may
    have none; the losses then return zero.

    Args:
        distance: a :class:`~fewshot.distances.Distance` or its name.
        margin: the triplet loss's margin.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [1.1], [5.0]])
        >>> SemiHardMiner("euclidean", margin=0.5)(x, torch.tensor([0, 0, 1, 2]))
        Triplets(anchor=tensor([0]), positive=tensor([1]), negative=tensor([2]))
    """

    def __init__(self, distance: Distance | str = "euclidean", margin: float = 0.2) -> None:
        super().__init__(distance)
        if margin <= 0:
            raise FewShotError(f"the semi-hard miner's margin must be positive, got {margin}")
        self.margin = margin

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        positive, negative = label_masks(labels)
        distances = self.distance.matrix(embeddings, embeddings)
        d_ap, d_an = distances.unsqueeze(2), distances.unsqueeze(1)
        valid = positive.unsqueeze(2) & negative.unsqueeze(1) & (d_an > d_ap) & (d_an < d_ap + self.margin)
        return Triplets(*valid.nonzero(as_tuple=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(distance={type(self.distance).__name__}, margin={self.margin})"
