import pytest
import torch
from synthetic import make_dataset

from fewshot.errors import FewShotError
from fewshot.evaluation.verification import (
    best_threshold,
    evaluate_verification,
    roc_auc,
    threshold_accuracy,
)


def brute_force_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    return wins.mean().item()


def test_roc_auc_matches_pair_counting_with_ties():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 6, (40,), generator=g).float()  # many ties
        labels = torch.randint(0, 2, (40,), generator=g)
        assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels))
    assert roc_auc(torch.tensor([0.0, 0.5, 0.25, 1.0]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([0, 1])) == 1.0


def test_best_threshold_is_the_most_accurate_of_all_cuts():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(60, generator=g).round(decimals=1)
    labels = (scores + torch.randn(60, generator=g) > 0).long()
    threshold, accuracy = best_threshold(scores, labels)
    cuts = torch.cat([scores, scores - 1e-3, scores + 1e-3])
    best = max(threshold_accuracy(scores, labels, float(t)) for t in cuts)
    assert accuracy == pytest.approx(best) and threshold_accuracy(scores, labels, threshold) == pytest.approx(best)
    assert best_threshold(torch.tensor([0.0, 0.5, 0.25, 1.0]), torch.tensor([0, 0, 1, 1])) == (0.125, 0.75)


def test_metrics_need_both_kinds_of_pairs():
    with pytest.raises(FewShotError, match="both same-class and different-class"):
        roc_auc(torch.rand(5), torch.ones(5))


class Brightness:
    """Scores a pair by how close the two images' mean brightness is (the synthetic classes differ in it)."""

    def pair_scores(self, left, right):
        return -(left.mean((1, 2, 3)) - right.mean((1, 2, 3))).abs()


def test_threshold_is_chosen_on_validation_pairs_and_applied_to_test_pairs():
    data = make_dataset(n_classes=6, per_class=8, size=8, noise=0.0, seed=3)
    images = data.images.clone()
    images[:] = (data.labels * 40).to(torch.uint8)[:, None, None, None]  # class c: constant brightness 40c
    data.images = images
    result = evaluate_verification(Brightness(), data.subset([0, 1, 2]), data.subset([3, 4, 5]), n_pairs=200)
    assert result.accuracy == 1.0 and result.roc_auc == 1.0 and result.validation_accuracy == 1.0
    assert -40 / 255 < result.threshold < 0
