"""All valid triplets of a batch ("batch all", Hermans, Beyer and Leibe 2017, section 2)."""
from __future__ import annotations

import torch

from fewshot.miners.base import Miner, Triplets, label_masks
from fewshot.miners.registry import MINERS


@MINERS.register("all")
class AllTripletsMiner(Miner):
    """Every ``(a, p, n)`` with ``y_a = y_p``, ``a != p`` and ``y_n != y_a``.

    A P x K batch gives ``P K (K - 1) (P - 1) K`` triplets, so this suits small batches.

    Example:
        >>> AllTripletsMiner()(torch.zeros(3, 2), torch.tensor([0, 0, 1]))
        Triplets(anchor=tensor([0, 1]), positive=tensor([1, 0]), negative=tensor([2, 2]))
    """

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        positive, negative = label_masks(labels)
        valid = positive.unsqueeze(2) & negative.unsqueeze(1)
        return Triplets(*valid.nonzero(as_tuple=True))
