"""Metric-learning losses by name: ``build_loss("triplet_margin", distance="cosine", margin=0.1)``."""
from __future__ import annotations

import inspect
from typing import Any

from fewshot.distances import Distance
from fewshot.errors import FewShotError
from fewshot.registry import Registry

LOSSES: Registry = Registry("loss function")


def build_loss(name: str, distance: Distance | str | None = None, **options: Any) -> Any:
    """The loss registered as ``name``; ``None`` options take the loss's defaults, unknown ones are refused.

    Example:
        >>> build_loss("triplet_margin", "cosine", margin=0.1)
        TripletMarginLoss(
          margin=0.1
          (distance): CosineDistance()
        )
    """
    cls = LOSSES.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "distance"}
    extra = sorted(set(given) - accepted)
    if extra:
        raise FewShotError(f"the {name} loss takes no option {', '.join(extra)}; "
                           f"its options: {', '.join(sorted(accepted)) or 'none'}")
    return cls(distance=distance, **given)
