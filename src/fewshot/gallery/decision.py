"""A gallery's decision: its method's own classify rule, over the candidates the index finds.

Three ways to match a query, by the method's :attr:`~fewshot.methods.base.Method.gallery_rule`:

``prototype`` (ProtoNet, metric, triplet; Snell et al. 2017, eq. 1-2)
    the nearest class mean under the method's distance. The index holds one prototype per class.
``example`` (the same methods, by option)
    the class of the nearest stored example under the method's distance.
``pairs`` (Siamese networks; Koch et al. 2015)
    the class whose examples have the highest mean pair score with the query. The index over
    the examples (Euclidean distance between embeddings) finds the candidate classes, and the
    method's head rescores all their examples: the coarse-to-fine search of the slides.

Every final score is the method's :meth:`~fewshot.methods.base.Method.scores`; a class's
*distance* is minus that score (a distance for ProtoNet, minus a logit for Koch's network).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fewshot.distances import CosineDistance
from fewshot.errors import FewShotError
from fewshot.methods import Method

MATCHES = {"prototype": ("prototype", "example"), "pairs": ("pairs",)}


def check_match(method: Method, match: str | None) -> str:
    """The match mode for ``method`` (its default when ``match`` is None), or an error naming the valid ones."""
    valid = MATCHES[method.gallery_rule]
    if match is None:
        return valid[0]
    if match not in valid:
        raise FewShotError(f"a {method.name} gallery matches by {' or '.join(valid)}, not {match!r}")
    return match


def search_metric(method: Method) -> str:
    """``ip`` (inner product of normalised vectors) for cosine methods, else ``l2``."""
    return "ip" if isinstance(getattr(method, "distance", None), CosineDistance) else "l2"


def class_scores(method: Method, match: str, support: torch.Tensor, support_labels: torch.Tensor,
                 queries: torch.Tensor, n_way: int) -> torch.Tensor:
    """Scores ``[..., n_query, n_way]`` of queries against labelled support embeddings, by ``match``.

    ``prototype`` and ``pairs`` are the method's own :meth:`~fewshot.methods.base.Method.scores`;
    ``example`` scores every support example as its own class and keeps each class's best.
    """
    if match != "example":
        return method.scores(support, support_labels, queries, n_way)
    per_example = method.scores(support, torch.arange(support.shape[-2]), queries, support.shape[-2])
    owner = F.one_hot(support_labels, n_way).bool()  # [n_support, n_way]
    masked = per_example.unsqueeze(-1).masked_fill(~owner, float("-inf"))  # [..., q, s, n_way]
    return masked.amax(-2)


@dataclass(frozen=True)
class Match:
    """One candidate class and its distance (minus the method's score).

    Example:
        >>> [(m.name, m.distance) for m in gallery.recognise(["q1.png"], top=3)[0].top]
    """

    name: str
    distance: float


@dataclass
class Recognition:
    """The answer for one query.

    ``name`` is the best class, or None when the query is unknown (its best distance beyond the
    threshold). Without a calibration there is no threshold: ``calibrated`` is False and the best
    class is always given.

    Example:
        >>> answer = gallery.recognise(["q1.png"])[0]
        >>> answer.name or "unknown", answer.distance, answer.threshold
    """

    source: str
    name: str | None
    distance: float
    threshold: float | None
    calibrated: bool
    margin: float | None  # distance of the second class minus that of the best
    top: list[Match]
    notes: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.name is not None

    def to_dict(self) -> dict:
        return {"source": self.source, "name": self.name, "known": self.known, "distance": self.distance,
                "threshold": self.threshold, "calibrated": self.calibrated, "margin": self.margin,
                "top": [{"name": m.name, "distance": m.distance} for m in self.top], "notes": self.notes}


def decide(source: str, ranked: list[Match], top: int, threshold: float | None, notes: list[str]) -> Recognition:
    """Recognition from classes ranked nearest first: unknown when the best is beyond ``threshold``."""
    best = ranked[0]
    margin = ranked[1].distance - best.distance if len(ranked) > 1 else None
    known = threshold is None or best.distance <= threshold
    return Recognition(source, best.name if known else None, best.distance, threshold, threshold is not None,
                       margin, ranked[:top], notes)
