"""The unknown threshold: chosen on classes the model never saw, reported on other such classes.

A query is *unknown* when the distance of its best class exceeds a threshold. The threshold
is chosen on open-set episodes drawn from never-trained classes: a gallery of ``n_way``
enrolled classes with ``k_shot`` examples each, queries of enrolled classes (other images
than the enrolled ones) and queries of ``n_unknown`` classes held out of the gallery. It is
the largest threshold at which at most ``target`` of the held-out queries are accepted (the
false-accept rate). The classes are split in two halves first: the threshold is chosen on
one, and the figures at that threshold (known accuracy, false-reject and false-accept rates,
AUROC of known against unknown) are measured on the other, with 95% confidence intervals
over episodes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from fewshot.errors import FewShotError

#: ``(support [E, S, d], support labels [S], queries [E, Q, d], n_way) -> class scores [E, Q, n_way]``.
ClassScores = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
MIN_REPORT_EPISODES = 600


@dataclass
class OpenSetEpisodes:
    """Best-class distances and correctness of the queries of many open-set episodes."""

    known_distance: np.ndarray  # [E, known queries]
    known_correct: np.ndarray  # [E, known queries], whether the best class is the true one
    unknown_distance: np.ndarray  # [E, unknown queries]


@dataclass
class Estimate:
    """A mean over episodes and the half-width of its 95% confidence interval."""

    mean: float
    ci95: float

    @classmethod
    def of(cls, per_episode: np.ndarray) -> Estimate:
        values = np.asarray(per_episode, np.float64)
        half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
        return cls(round(float(values.mean()), 6), round(float(half), 6))


@dataclass
class OpenSetReport:
    """Figures at one threshold, on episodes of classes the threshold was not chosen on."""

    known_accuracy: Estimate  # known queries accepted and given their true class
    closed_set_accuracy: Estimate  # known queries given their true class, whatever the threshold
    false_reject: Estimate
    false_accept: Estimate
    auroc: Estimate  # known against unknown, by best-class distance


@dataclass
class Calibration:
    """A threshold, how it was chosen, and what it gives on other unseen classes.

    Example:
        >>> calibration = gallery.calibrate(load_splits("omniglot", "lake")["test"])
        >>> calibration.threshold, calibration.target_false_accept
    """

    threshold: float
    target_false_accept: float
    n_way: int
    k_shot: int
    n_query: int
    n_unknown: int
    episodes: int
    calibration_classes: int
    report_classes: int
    report: OpenSetReport
    dataset: str = ""
    gallery_classes: int = 0
    fingerprint: str = ""
    match: str = ""
    created: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        report = OpenSetReport(**{k: Estimate(**v) for k, v in d["report"].items()})
        return cls(**{**d, "report": report})


def open_set_episodes(
    embeddings: torch.Tensor, labels: np.ndarray, classes: np.ndarray, class_scores: ClassScores, *,
    n_way: int, k_shot: int, n_query: int, n_unknown: int, episodes: int, seed: int,
    batch: int = 16, progress: bool = False, desc: str = "open-set episodes",
) -> OpenSetEpisodes:
    """Draw ``episodes`` open-set episodes from ``classes`` and score their queries.

    Each episode enrols ``n_way`` classes with ``k_shot`` examples and asks ``n_query`` other
    images of each, and ``n_query`` images of each of ``n_unknown`` classes outside the gallery.
    """
    rng = np.random.default_rng(seed)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    short = [c for c, m in members.items() if len(m) < k_shot + n_query]
    if short:
        raise FewShotError(f"{len(short)} classes have fewer than k_shot + n_query = {k_shot + n_query} images; "
                           f"lower --shot or --queries")
    if n_way + n_unknown > len(classes):
        raise FewShotError(f"an episode needs {n_way} + {n_unknown} classes; only {len(classes)} are available")
    support_idx = np.empty((episodes, n_way * k_shot), np.int64)
    known_idx = np.empty((episodes, n_way * n_query), np.int64)
    unknown_idx = np.empty((episodes, n_unknown * n_query), np.int64)
    for e in range(episodes):
        chosen = rng.choice(classes, n_way + n_unknown, replace=False)
        draws = [rng.choice(members[int(c)], k_shot + n_query, replace=False) for c in chosen[:n_way]]
        support_idx[e] = np.concatenate([d[:k_shot] for d in draws])
        known_idx[e] = np.concatenate([d[k_shot:] for d in draws])
        unknown_idx[e] = np.concatenate([rng.choice(members[int(c)], n_query, replace=False) for c in chosen[n_way:]])
    support_labels = torch.arange(n_way).repeat_interleave(k_shot)
    known_labels = np.arange(n_way).repeat(n_query)
    known_d, known_ok, unknown_d = [], [], []
    for start in tqdm(range(0, episodes, batch), desc=desc, disable=not progress, leave=False):
        stop = min(start + batch, episodes)
        support = embeddings[torch.from_numpy(support_idx[start:stop])]
        queries = embeddings[torch.from_numpy(np.concatenate([known_idx[start:stop], unknown_idx[start:stop]], 1))]
        scores = class_scores(support, support_labels, queries, n_way).float()
        best, predicted = scores.max(-1)
        distance = (-best).numpy()
        split = known_idx.shape[1]
        known_d.append(distance[:, :split])
        known_ok.append(predicted[:, :split].numpy() == known_labels)
        unknown_d.append(distance[:, split:])
    return OpenSetEpisodes(np.concatenate(known_d), np.concatenate(known_ok), np.concatenate(unknown_d))


def threshold_for(unknown_distance: np.ndarray, target: float) -> float:
    """The largest threshold accepting (distance <= threshold) at most ``target`` of ``unknown_distance``."""
    if not 0 < target < 1:
        raise FewShotError(f"the false-accept rate is a fraction in (0, 1), such as 0.01; got {target}")
    values = np.sort(np.asarray(unknown_distance, np.float64).reshape(-1))
    allowed = int(np.floor(target * len(values)))
    if allowed == 0 or values[allowed - 1] == values[allowed]:
        return float(np.nextafter(values[allowed], -np.inf))
    return float((values[allowed - 1] + values[allowed]) / 2)


def report_at(episodes: OpenSetEpisodes, threshold: float) -> OpenSetReport:
    """Known accuracy, false-reject and false-accept rates and AUROC at ``threshold``, per episode."""
    accepted = episodes.known_distance <= threshold
    known = episodes.known_distance[:, :, None]
    unknown = episodes.unknown_distance[:, None, :]
    auroc = ((known < unknown).mean((1, 2)) + 0.5 * (known == unknown).mean((1, 2)))
    return OpenSetReport(
        known_accuracy=Estimate.of((accepted & episodes.known_correct).mean(1)),
        closed_set_accuracy=Estimate.of(episodes.known_correct.mean(1)),
        false_reject=Estimate.of((~accepted).mean(1)),
        false_accept=Estimate.of((episodes.unknown_distance <= threshold).mean(1)),
        auroc=Estimate.of(auroc),
    )


def calibrate(
    embeddings: torch.Tensor, labels: np.ndarray, class_scores: ClassScores, *, target: float = 0.01,
    n_way: int = 20, k_shot: int = 1, n_query: int = 5, n_unknown: int = 5, episodes: int = MIN_REPORT_EPISODES,
    seed: int = 0, progress: bool = False,
) -> Calibration:
    """Choose the threshold on half of the classes of ``labels``; report it on the other half.

    Example:
        >>> cal = calibrate(embeddings, labels, method.scores, target=0.01, n_way=20)
        >>> cal.threshold, cal.report.false_accept.mean
        (0.83, 0.0102)
    """
    if episodes < 1 or n_way < 1 or k_shot < 1 or n_query < 1 or n_unknown < 1:
        raise FewShotError("episodes, way, shot, queries and unknown classes must all be at least 1")
    threshold_for(np.zeros(2), target)  # validates target
    classes = np.random.default_rng(seed).permutation(np.unique(labels))
    half = len(classes) // 2
    calibration_classes, report_classes = classes[:half], classes[half:]
    if n_way + n_unknown > half:
        raise FewShotError(
            f"calibrating {n_way}-way galleries with {n_unknown} held-out classes needs twice {n_way + n_unknown} "
            f"unseen classes (half to choose the threshold, half to report it); the data has {len(classes)}. "
            f"Pass a smaller --way or a data set with more classes")
    common = {"n_way": n_way, "k_shot": k_shot, "n_query": n_query, "n_unknown": n_unknown, "episodes": episodes}
    chosen = open_set_episodes(embeddings, labels, calibration_classes, class_scores, seed=seed + 1,
                               progress=progress, desc="calibrating", **common)
    threshold = threshold_for(chosen.unknown_distance, target)
    measured = open_set_episodes(embeddings, labels, report_classes, class_scores, seed=seed + 2,
                                 progress=progress, desc="reporting", **common)
    return Calibration(threshold=threshold, target_false_accept=target, calibration_classes=half,
                       report_classes=len(report_classes), report=report_at(measured, threshold), **common)
