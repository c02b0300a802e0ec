"""Miners by name: ``build_miner("batch_hard", distance)``."""
from __future__ import annotations

from typing import Any

from fewshot.distances import Distance
from fewshot.miners.base import Miner
from fewshot.registry import Registry

MINERS: Registry[type[Miner]] = Registry("miner", inputs=("distance",))
"""The in-batch triplet miners ``--miner`` names, built by :func:`build_miner`.

Example:
    >>> sorted(MINERS)
    ['all', 'batch_hard', 'semi_hard']
"""


def build_miner(name: str, distance: Distance | str = "euclidean", **options: Any) -> Miner:
    """The miner registered as ``name``; options it does not take (or ``None``) are refused (or dropped).

    Example:
        >>> build_miner("semi_hard", "euclidean", margin=0.2)
        SemiHardMiner(distance=EuclideanDistance, margin=0.2)
    """
    return MINERS.build(name, distance=distance, **{k: v for k, v in options.items() if v is not None})
