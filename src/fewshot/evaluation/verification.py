"""Verification metrics: is a pair of images of one class or of two?

A pair scorer gives each pair a score (higher: more alike). Its accuracy is measured
at the threshold that is best on *validation* pairs (chosen there, applied unchanged
to the test pairs), and its ROC-AUC, the probability that a random same pair scores
above a random different pair (Mann-Whitney U / (P N), ties counting one half), needs
no threshold at all.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from fewshot.data.dataset import ImageDataset
from fewshot.data.pairs import PairSampler
from fewshot.methods.pair_threshold import PairScorer, best_threshold, check_pair_scores, score_pairs


@dataclass
class VerificationResult:
    """Accuracy on test pairs at ``threshold`` (chosen on validation pairs), and the test ROC-AUC."""

    accuracy: float
    roc_auc: float
    threshold: float
    validation_accuracy: float
    n_pairs: int

    def to_dict(self) -> dict:
        return asdict(self)


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve from average ranks: ``(sum of positive ranks - P(P+1)/2) / (P N)``.

    Example:
        >>> roc_auc(torch.tensor([0.0, 0.5, 0.25, 1.0]), torch.tensor([0, 0, 1, 1]))
        0.75
    """
    scores, labels = check_pair_scores(scores, labels)
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    average_rank = torch.cumsum(counts, 0) - counts + (counts + 1) / 2  # 1-based, ties share their mean rank
    ranks = average_rank[inverse].double()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_accuracy(scores: torch.Tensor, labels: torch.Tensor, threshold: float) -> float:
    """Accuracy of "same iff score > threshold"."""
    scores, labels = check_pair_scores(scores, labels)
    return float(((scores > threshold) == labels).double().mean())


def evaluate_verification(
    scorer: PairScorer,
    validation: ImageDataset,
    test: ImageDataset,
    n_pairs: int = 2000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> VerificationResult:
    """Accuracy on ``n_pairs`` balanced test pairs at the threshold best on ``n_pairs`` validation pairs.

    The validation and test pairs are drawn with different seeds, so even when both come
    from the same images the threshold is never chosen on the test pairs themselves.

    Example:
        >>> result = evaluate_verification(model, splits["val"], splits["test"])
        >>> result.accuracy, result.roc_auc
    """
    val_pairs = PairSampler(validation, n_pairs, seed=seed).batch(0)
    test_pairs = PairSampler(test, n_pairs, seed=seed).batch(1)
    threshold, val_accuracy = best_threshold(score_pairs(scorer, val_pairs, device), val_pairs.labels)
    test_scores = score_pairs(scorer, test_pairs, device)
    return VerificationResult(
        accuracy=threshold_accuracy(test_scores, test_pairs.labels, threshold),
        roc_auc=roc_auc(test_scores, test_pairs.labels),
        threshold=threshold,
        validation_accuracy=val_accuracy,
        n_pairs=n_pairs,
    )
