"""The unknown threshold on synthetic embeddings whose false-accept rate is known, and the index's recall."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.errors import FewShotError
from fewshot.gallery.calibration import calibrate, threshold_for
from fewshot.gallery.index import VectorIndex, read_index_files, write_index_files
from fewshot.methods.base import class_means


def prototype_scores(support, labels, queries, n_way):
    return -torch.cdist(queries, class_means(support, labels, n_way))


def clusters(n_classes=120, per_class=20, dim=16, spread=0.45, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g)
    points = centres.repeat_interleave(per_class, 0) + spread * torch.randn(n_classes * per_class, dim, generator=g)
    return points, np.arange(n_classes).repeat(per_class)


def test_threshold_for_meets_the_target_exactly():
    values = np.arange(1000, dtype=float)
    t = threshold_for(values, 0.01)
    assert (values <= t).sum() == 10 and (values <= t + 1).sum() == 11
    assert (np.array([3.0, 3.0, 3.0]) <= threshold_for(np.array([3.0, 3.0, 3.0]), 0.5)).sum() == 0
    with pytest.raises(FewShotError, match="fraction in"):
        threshold_for(values, 1.5)


@pytest.mark.parametrize("target", [0.01, 0.05])
def test_calibration_lands_near_the_target_on_other_classes(target):
    embeddings, labels = clusters()
    result = calibrate(embeddings, labels, prototype_scores, target=target, n_way=10, k_shot=1, n_query=5,
                       n_unknown=5, episodes=600, seed=1)
    report = result.report
    # The false-accept rate is measured on classes the threshold was not chosen on: it estimates the true rate.
    assert abs(report.false_accept.mean - target) < max(0.6 * target, 3 * report.false_accept.ci95)
    assert 0.9 < report.auroc.mean <= 1 and report.auroc.ci95 < 0.01
    assert report.known_accuracy.mean <= report.closed_set_accuracy.mean
    assert result.calibration_classes == 60 and result.report_classes == 60


def test_true_false_accept_rate_of_a_known_distribution():
    """Images i.i.d. N(0, I_d) whatever their class: support s and unknown query u differ by N(0, 2 I_d), so
    |s - u| / sqrt(2) follows chi(d), and the true false-accept rate at t is P(chi2(d) <= t^2 / 2)."""
    dim = 4
    embeddings = torch.randn(41 * 40, dim, generator=torch.Generator().manual_seed(0))
    labels = np.arange(41).repeat(40)
    result = calibrate(embeddings, labels, prototype_scores, target=0.05, n_way=1, k_shot=1, n_query=20,
                       n_unknown=10, episodes=600, seed=3)
    true_rate = torch.special.gammainc(torch.tensor(dim / 2), torch.tensor(result.threshold ** 2 / 4)).item()
    assert true_rate == pytest.approx(0.05, abs=0.01)
    assert result.report.false_accept.mean == pytest.approx(true_rate, abs=3 * result.report.false_accept.ci95)


def test_impossible_calibration_says_what_to_change():
    embeddings, labels = clusters(n_classes=12)
    with pytest.raises(FewShotError, match="needs twice 15 unseen classes .* has 12. Pass a smaller --way"):
        calibrate(embeddings, labels, prototype_scores, n_way=10, n_unknown=5)
    with pytest.raises(FewShotError, match="fewer than k_shot \\+ n_query = 25"):
        calibrate(embeddings, labels, prototype_scores, n_way=2, n_unknown=2, k_shot=20, n_query=5)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_approximate_index_recall_against_exact_search(metric):
    embeddings, _ = clusters(n_classes=300, per_class=12, dim=32, spread=0.6)
    base, queries = embeddings[:3000].numpy(), embeddings[3000:].numpy()
    exact, approximate = VectorIndex(32, metric), VectorIndex(32, metric, approximate=True)
    keys = np.arange(5, 3005)
    exact.add(keys, base)
    approximate.add(keys, base)
    truth, _ = exact.search(queries, 1)
    found, _ = approximate.search(queries, 1)
    assert (truth == found).mean() >= 0.99
    removed = truth[:50, 0]
    approximate.remove(removed)
    exact.remove(removed)
    after, _ = approximate.search(queries[:50], 5)
    assert not np.isin(after, removed).any()
    again, _ = exact.search(queries[:50], 5)
    assert not np.isin(again, removed).any() and (again >= 0).all()


def test_index_round_trip_and_compaction(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    index = VectorIndex(8)
    index.add(np.arange(2000), vectors)
    index.remove(np.arange(0, 1600))  # past a quarter dead: compacted
    assert index.dead == 0 and len(index) == 400
    path = tmp_path / "x.index"
    write_index_files(path, {"x": index}, {"extra": np.arange(3)}, {"generation": "7"})
    write_index_files(path, {"x": index}, {"extra": np.arange(3)}, {"generation": "8"})
    assert len(list(tmp_path.glob("x.index.*.faiss"))) == 1  # the first save's file is gone
    indexes, arrays = read_index_files(path, 8, "l2")
    copy = indexes["x"]
    assert (arrays["extra"] == np.arange(3)).all()
    a, da = index.search(vectors[:20], 3)
    b, db = copy.search(vectors[:20], 3)
    assert (a == b).all() and (da == db).all() and (a >= 1600).all()
