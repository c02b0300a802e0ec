"""Reproducible random streams: one independent generator per (seed, key...)."""
from __future__ import annotations

import numpy as np
import torch


def generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` determined by ``seed`` and ``keys`` alone.

    Episode ``i`` of a run draws from ``generator(seed, i)``, so any episode can be
    rebuilt on its own: a resumed run sees the same episodes as an uninterrupted one,
    and two models are evaluated on the same list.

    Example:
        >>> torch.equal(torch.rand(3, generator=generator(0, 7)), torch.rand(3, generator=generator(0, 7)))
        True
    """
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))
