"""Miners by name: ``build_miner("batch_hard", distance)``."""
from __future__ import annotations

import inspect
from typing import Any

from fewshot.distances import Distance
from fewshot.errors import FewShotError
from fewshot.miners.base import Miner
from fewshot.registry import Registry

MINERS: Registry[type[Miner]] = Registry("miner")


def build_miner(name: str, distance: Distance | str = "euclidean", **options: Any) -> Miner:
    """The miner registered as ``name``; options it does not take (or ``None``) are refused (or dropped).

    Example:
        >>> build_miner("semi_hard", "euclidean", margin=0.2)
        SemiHardMiner(distance=EuclideanDistance, margin=0.2)
    """
    cls = MINERS.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "distance"}
    extra = sorted(set(given) - accepted)
    if extra:
        raise FewShotError(f"the {name} miner takes no option {', '.join(extra)}; "
                           f"its options: {', '.join(sorted(accepted)) or 'none'}")
    return cls(distance=distance, **given)
