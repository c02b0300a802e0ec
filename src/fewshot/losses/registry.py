"""Metric-learning losses by name: ``build_loss("triplet_margin", distance="cosine", margin=0.1)``."""
from __future__ import annotations

from typing import Any

from fewshot.distances import Distance
from fewshot.registry import Registry

LOSSES: Registry = Registry("loss function", inputs=("distance",))
"""The metric-learning losses ``--loss`` names, built by :func:`build_loss`.

Example:
    >>> sorted(LOSSES)
    ['contrastive', 'histogram', 'quadruplet', 'softmax_ratio', 'symmetric_margin', 'triplet_margin']
"""


def build_loss(name: str, distance: Distance | str | None = None, **options: Any) -> Any:
    """The loss registered as ``name``; ``None`` options take the loss's defaults, unknown ones are refused.

    Example:
        >>> build_loss("triplet_margin", "cosine", margin=0.1)
        TripletMarginLoss(
          margin=0.1
          (distance): CosineDistance()
        )
    """
    return LOSSES.build(name, distance=distance, **{k: v for k, v in options.items() if v is not None})
