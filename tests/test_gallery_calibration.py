"""The unknown threshold on synthetic embeddings whose false-accept rate is known, and the index's recall."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewshot.errors import FewShotError
from fewshot.gallery.calibration import (
    Calibration,
    Estimate,
    OpenSetEpisodes,
    calibrate,
    open_set_episodes,
    report_at,
    threshold_for,
)
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


def test_an_estimate_is_the_mean_over_episodes_and_its_normal_interval_rounded_to_six_places():
    assert Estimate.of(np.array([1.0, 0.0])) == Estimate(0.5, round(1.96 * np.sqrt(0.5) / np.sqrt(2), 6))
    assert Estimate.of(np.array([1, 2, 2], np.int64)) == Estimate(1.666667, 0.653333)
    one = Estimate.of(np.array([0.25]))
    assert one.mean == 0.25 and np.isnan(one.ci95)


def test_threshold_for_splits_between_the_last_accepted_and_the_first_refused_distance():
    values = np.array([[3.0, 1.0], [2.0, 2.0]])  # any shape: all distances of all episodes
    assert threshold_for(values, 0.25) == 1.5
    assert threshold_for(values, 0.5) == np.nextafter(2.0, -np.inf)  # a tie at the boundary: refuse both
    assert threshold_for(values, 0.2) == np.nextafter(1.0, -np.inf)  # nothing may be accepted
    assert threshold_for(values, 0.999) == 2.5
    for target in (0, 1, -0.1):
        with pytest.raises(FewShotError, match=f"^the false-accept rate is a fraction in \\(0, 1\\), such as 0.01; "
                                               f"got {target}$"):
            threshold_for(values, target)


def test_the_report_at_a_threshold_by_hand():
    episodes = OpenSetEpisodes(known_distance=np.array([[1.0, 3.0], [2.0, 2.0]]),
                               known_correct=np.array([[True, True], [False, True]]),
                               unknown_distance=np.array([[2.0, 4.0], [2.0, 1.0]]))
    report = report_at(episodes, 2.0)  # accepts distances up to 2, inclusive
    assert report.known_accuracy.mean == 0.5  # episode 1: 1 of 2 accepted and right; episode 2: 1 of 2
    assert report.closed_set_accuracy.mean == 0.75 and report.false_reject.mean == 0.25
    assert report.false_accept.mean == 0.75  # 1 of 2, then 2 of 2
    # AUROC per episode, over (known, unknown) pairs: 1 when the known is nearer, 1/2 for a tie: 3/4, then 1/4
    assert report.auroc == Estimate(0.5, round(1.96 * np.sqrt(0.125) / np.sqrt(2), 6))
    assert report.known_accuracy.ci95 == 0 and report.false_accept.ci95 == round(1.96 * np.sqrt(0.125) / np.sqrt(2), 6)


def test_open_set_episodes_enrol_some_classes_and_ask_others():
    """Each image's embedding is (its class, its index), so the scores can check what each episode holds."""
    labels = np.arange(12).repeat(6)
    embeddings = torch.tensor(np.stack([labels, np.arange(len(labels))], 1), dtype=torch.float32)
    classes = np.arange(1, 12)  # class 0 is never drawn
    seen = []

    def scores(support, support_labels, queries, n_way):
        assert support_labels.tolist() == [0, 0, 1, 1, 2, 2] and n_way == 3
        for s, q in zip(support, queries):
            enrolled = s[:, 0].reshape(3, 2)
            assert (enrolled[:, :1] == enrolled).all() and len(set(enrolled[:, 0].tolist())) == 3
            known, unknown = q[:12], q[12:]
            assert known[:, 0].reshape(3, 4).tolist() == enrolled[:, :1].repeat(1, 4).tolist()
            assert not set(known[:, 1].tolist()) & set(s[:, 1].tolist())  # other images than the enrolled
            assert not set(unknown[:, 0].tolist()) & set(enrolled[:, 0].tolist()) and 0 not in unknown[:, 0]
            assert len(set(unknown[:, 1].tolist())) == 8  # 4 different images of each of the 2 unknown classes
            assert unknown[:, 0].reshape(2, 4).unique(dim=1).shape == (2, 1) and len(set(unknown[:, 0].tolist())) == 2
            seen.append(tuple(s[:, 1].tolist()))
        class_of = support[:, ::2, 0]  # [E, n_way]
        distance = (queries[:, :, None, 0] - class_of[:, None, :]).abs()
        distance[:, 0, 0] = 100.0  # the first known query is made nearer to another enrolled class than its own
        return -distance

    result = open_set_episodes(embeddings, labels, classes, scores, n_way=3, k_shot=2, n_query=4, n_unknown=2,
                               episodes=37, seed=0, batch=16)
    assert len(seen) == 37 and len(set(seen)) == 37  # every episode scored once, each a new draw
    assert result.known_distance.shape == result.known_correct.shape == (37, 12)
    assert result.unknown_distance.shape == (37, 8)
    assert not result.known_correct[:, 0].any() and result.known_correct[:, 1:].all()
    assert (result.known_distance[:, 1:] == 0).all() and (result.unknown_distance >= 1).all()
    again = open_set_episodes(embeddings, labels, classes, scores, n_way=3, k_shot=2, n_query=4, n_unknown=2,
                              episodes=37, seed=0, batch=5)
    assert np.array_equal(again.unknown_distance, result.unknown_distance)  # the batch size changes nothing


def test_a_calibration_is_stored_and_read_back_whole():
    embeddings, labels = clusters(n_classes=30)
    result = calibrate(embeddings, labels, prototype_scores, target=0.05, n_way=4, k_shot=2, n_query=3,
                       n_unknown=2, episodes=20, seed=4)
    assert (result.n_way, result.k_shot, result.n_query, result.n_unknown, result.episodes) == (4, 2, 3, 2, 20)
    assert (result.calibration_classes, result.report_classes, result.target_false_accept) == (15, 15, 0.05)
    assert Calibration.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert calibrate(embeddings, labels, prototype_scores, target=0.05, n_way=4, k_shot=2, n_query=3, n_unknown=2,
                     episodes=20, seed=4) == result
    other = calibrate(embeddings, labels, prototype_scores, target=0.05, n_way=4, k_shot=2, n_query=3, n_unknown=2,
                      episodes=20, seed=5)
    assert other.threshold != result.threshold
    for bad in ({"episodes": 0}, {"n_way": 0}, {"k_shot": 0}, {"n_query": 0}, {"n_unknown": 0}):
        with pytest.raises(FewShotError, match="^episodes, way, shot, queries and unknown classes must all be at "
                                               "least 1$"):
            calibrate(embeddings, labels, prototype_scores, **bad)
    with pytest.raises(FewShotError, match="fraction in"):
        calibrate(embeddings, labels, prototype_scores, target=1.0)


def test_open_set_episodes_show_progress_only_when_asked_and_need_enough_classes(capsys):
    embeddings, labels = clusters(n_classes=5, per_class=3)
    common = {"n_way": 3, "k_shot": 1, "n_query": 2, "episodes": 3, "seed": 0}
    open_set_episodes(embeddings, labels, np.arange(5), prototype_scores, n_unknown=2, **common)
    assert capsys.readouterr().err == ""
    open_set_episodes(embeddings, labels, np.arange(5), prototype_scores, n_unknown=2, progress=True, desc="drawing",
                      **common)
    assert "drawing" in capsys.readouterr().err
    open_set_episodes(embeddings, labels, np.arange(5), prototype_scores, n_unknown=2, progress=True, **common)
    assert "\ropen-set episodes:" in capsys.readouterr().err
    with pytest.raises(FewShotError, match=r"^an episode needs 3 \+ 3 classes; only 5 are available$"):
        open_set_episodes(embeddings, labels, np.arange(5), prototype_scores, n_unknown=3, **common)


def test_calibrate_defaults_to_twenty_way_one_shot_galleries_and_takes_the_smallest_episodes(capsys):
    embeddings, labels = clusters(n_classes=50, per_class=6)
    result = calibrate(embeddings, labels, prototype_scores, episodes=3)
    assert (result.n_way, result.k_shot, result.n_query, result.n_unknown) == (20, 1, 5, 5)
    assert result.target_false_accept == 0.01 and result.episodes == 3
    assert calibrate(embeddings, labels, prototype_scores, episodes=3, seed=0) == result
    assert capsys.readouterr().err == ""
    smallest = calibrate(embeddings, labels, prototype_scores, n_way=1, k_shot=1, n_query=1, n_unknown=1, episodes=1)
    assert smallest.episodes == 1 and np.isnan(smallest.report.false_accept.ci95)
    assert capsys.readouterr().err == ""
    calibrate(embeddings, labels, prototype_scores, episodes=3, progress=True)
    shown = capsys.readouterr().err
    assert "calibrating:" in shown and "reporting:" in shown
