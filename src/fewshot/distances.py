"""Distances between embeddings, as small modules every loss and method can take.

Each distance maps ``a [..., n, d]`` and ``b [..., m, d]`` to a matrix ``[..., n, m]``
(:meth:`Distance.matrix`) or paired rows ``a [n, d]``, ``b [n, d]`` to ``[n]``
(:meth:`Distance.pairwise`). Larger means farther apart for every distance here,
cosine included (``1 - cos``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.registry import Registry

DISTANCES: Registry[type["Distance"]] = Registry("distance")


def full_precision(a: torch.Tensor) -> torch.autocast:
    """A context in which autocast is off, for sums whose cancellation bfloat16 cannot bear.

    Example:
        >>> with full_precision(a):
        ...     squared = (a.float() ** 2).sum(-1)
    """
    return torch.autocast(device_type=a.device.type, enabled=False)


class Distance(nn.Module, ABC):
    """Base class: subclasses implement :meth:`_matrix` and :meth:`_pairwise`.

    Distances are always computed in float32, even under bfloat16 autocast: with 8 bits of
    mantissa, ``|a|^2 + |b|^2 - 2 a.b`` loses the differences between classes.

    Example:
        >>> distance = get_distance("euclidean")
        >>> distance.matrix(queries, prototypes).shape  # [n_queries, n_prototypes]
    """

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """All pairs: ``a [..., n, d]``, ``b [..., m, d]`` -> ``[..., n, m]``."""
        with full_precision(a):
            return self._matrix(a.float(), b.float())

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Row by row: ``a [n, d]``, ``b [n, d]`` -> ``[n]``."""
        with full_precision(a):
            return self._pairwise(a.float(), b.float())

    @abstractmethod
    def _matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """:meth:`matrix` on float32 inputs."""

    @abstractmethod
    def _pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """:meth:`pairwise` on float32 inputs."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.pairwise(a, b)


@DISTANCES.register("l1")
class L1Distance(Distance):
    """``sum |a - b|`` (Koch et al. 2015; the softmax-ratio triplet loss of seed 003).

    Example:
        >>> L1Distance()(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]))
        tensor([7.])
    """

    def _matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.unsqueeze(-2) - b.unsqueeze(-3)).abs().sum(-1)

    def _pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().sum(-1)


@DISTANCES.register("squared_euclidean")
class SquaredEuclideanDistance(Distance):
    """``sum (a - b)^2``, the distance of Prototypical Networks (Snell et al. 2017, eq. 2).

    Example:
        >>> SquaredEuclideanDistance()(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]))
        tensor([25.])
    """

    def _matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = (a * a).sum(-1).unsqueeze(-1) + (b * b).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)
        return sq.clamp_min(0)

    def _pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).sum(-1)


@DISTANCES.register("euclidean")
class EuclideanDistance(Distance):
    """``sqrt(max(sum (a - b)^2, eps))``: the floor keeps the gradient finite at zero distance.

    Example:
        >>> EuclideanDistance()(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]))
        tensor([5.])
    """

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps
        self._squared = SquaredEuclideanDistance()

    def _matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._squared._matrix(a, b).clamp_min(self.eps).sqrt()

    def _pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._squared._pairwise(a, b).clamp_min(self.eps).sqrt()


@DISTANCES.register("cosine")
class CosineDistance(Distance):
    """``1 - cos(a, b)``.

    Example:
        >>> CosineDistance()(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]))
        tensor([1.])
    """

    def _matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1 - F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)

    def _pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(a, b, dim=-1)


def get_distance(name: str) -> Distance:
    """The distance registered under ``name`` (``l1``, ``euclidean``, ``squared_euclidean``, ``cosine``).

    Example:
        >>> get_distance("l1")
        L1Distance()
    """
    return DISTANCES.get(name)()
