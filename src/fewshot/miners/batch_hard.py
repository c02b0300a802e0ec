"""Batch-hard mining (Hermans, Beyer and Leibe 2017, "In Defense of the Triplet Loss", eq. 5)."""
from __future__ import annotations

import math

import torch

from fewshot.miners.base import Miner, Triplets, label_masks
from fewshot.miners.registry import MINERS


@MINERS.register("batch_hard")
class BatchHardMiner(Miner):
    """One triplet per anchor: its farthest positive and its closest negative in the batch.

    Anchors without a positive or without a negative in the batch are skipped.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [1.5], [10.0]])
        >>> BatchHardMiner("euclidean")(x, torch.tensor([0, 0, 0, 1, 1])).negative
        tensor([3, 3, 3, 1, 2])
    """

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        positive, negative = label_masks(labels)
        distances = self.distance.matrix(embeddings, embeddings)
        hardest_positive = distances.masked_fill(~positive, -math.inf).argmax(1)
        hardest_negative = distances.masked_fill(~negative, math.inf).argmin(1)
        anchors = (positive.any(1) & negative.any(1)).nonzero(as_tuple=True)[0]
        return Triplets(anchors, hardest_positive[anchors], hardest_negative[anchors])
