"""The same/different threshold of a pair scorer: its scores of many pairs, and the most accurate cut.

A Siamese network saves the threshold it chose on validation pairs with its weights
(:meth:`~fewshot.methods.siamese.SiameseNetwork.calibrate`); the verification metrics
(:mod:`fewshot.evaluation.verification`) choose it the same way.
"""
from __future__ import annotations

from typing import Protocol

import torch

from fewshot.data.pairs import PairBatch
from fewshot.errors import FewShotError

SCORE_BATCH = 1024


class PairScorer(Protocol):
    """Anything that scores pairs of images, e.g. :class:`~fewshot.methods.siamese.SiameseNetwork`."""

    def pair_scores(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor: ...


def check_pair_scores(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores as float64 and labels as booleans, flat, on the CPU; both same and different pairs are required."""
    scores, labels = scores.detach().double().flatten().cpu(), labels.detach().flatten().cpu() > 0.5
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.numel()} vs {labels.numel()}")
    if labels.all() or not labels.any():
        raise FewShotError("verification needs both same-class and different-class pairs")
    return scores, labels


def best_threshold(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The threshold ``t`` maximising the accuracy of "same iff score > t", and that accuracy.

    Candidates are the midpoints between consecutive distinct scores, plus one below
    and one at the top of all of them.

    Example:
        >>> best_threshold(torch.tensor([0.0, 0.5, 0.25, 1.0]), torch.tensor([0, 0, 1, 1]))
        (0.125, 0.75)
    """
    scores, labels = check_pair_scores(scores, labels)
    values, inverse = torch.unique(scores, return_inverse=True)
    n = len(values)
    pos = torch.bincount(inverse[labels], minlength=n)
    neg = torch.bincount(inverse[~labels], minlength=n)
    zero = torch.zeros(1, dtype=pos.dtype)
    pos_below = torch.cat([zero, torch.cumsum(pos, 0)])  # positives scored below candidate j (j = 0 .. n)
    neg_below = torch.cat([zero, torch.cumsum(neg, 0)])
    correct = (int(labels.sum()) - pos_below) + neg_below
    j = int(correct.argmax())
    thresholds = torch.cat([values[:1] - 1, (values[:-1] + values[1:]) / 2, values[-1:]])
    return float(thresholds[j]), float(correct[j]) / labels.numel()


@torch.inference_mode()
def score_pairs(scorer: PairScorer, pairs: PairBatch, device: torch.device | str = "cpu") -> torch.Tensor:
    """Scores ``[n]`` of the pairs of ``pairs``, in batches of :data:`SCORE_BATCH`."""
    out = []
    for start in range(0, len(pairs), SCORE_BATCH):
        left, right = pairs.left[start:start + SCORE_BATCH], pairs.right[start:start + SCORE_BATCH]
        out.append(scorer.pair_scores(pairs.images[left].to(device), pairs.images[right].to(device)).float().cpu())
    return torch.cat(out)
