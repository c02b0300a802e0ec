"""Prototypical Networks (Snell et al. 2017).

A class is represented by its prototype, the mean embedding of its support
examples, ``c_k = mean f(x)`` (eq. 1); a query is classified by a softmax over the
negative distances to the prototypes, ``p(y=k|x) = softmax(-d(f(x), c_k))`` (eq. 2),
with squared Euclidean ``d`` by default. Training minimises the cross-entropy of the
queries of N-way K-shot episodes (60-way 5-shot for Omniglot).
"""
from __future__ import annotations

import torch
from torch import nn

from fewshot.distances import get_distance
from fewshot.errors import FewShotError
from fewshot.methods.base import class_means
from fewshot.methods.episodic import EpisodicMethod
from fewshot.methods.registry import METHODS


@METHODS.register("protonet")
class PrototypicalNetworks(EpisodicMethod):
    """Prototypical Networks: nearest class prototype in embedding space.

    The training episodes' options (``n_way``, ``k_shot``, ``n_query``, ``distort``, ``distort_until``,
    ``within_alphabet``)
    are those of :class:`~fewshot.methods.episodic.EpisodicMethod`.

    Args:
        encoder: the embedding network f.
        distance: ``squared_euclidean`` (the paper's), ``euclidean`` (easyfsl's) or ``cosine``.

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = PrototypicalNetworks(build_encoder("conv4", 1, 28))
        >>> model.set_support(support_images, support_labels)
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "protonet"
    gallery_rule = "prototype"
    distances = ("squared_euclidean", "euclidean", "cosine")

    def __init__(
        self,
        encoder: nn.Module,
        distance: str = "squared_euclidean",
        n_way: int = 60,
        k_shot: int = 5,
        n_query: int = 5,
        distort: bool = False,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        super().__init__(encoder, n_way, k_shot, n_query, distort, distort_until, within_alphabet)
        if distance not in self.distances:
            raise FewShotError(f"unknown distance {distance!r} for protonet; valid: {', '.join(self.distances)}")
        self.distance = get_distance(distance)

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        prototypes = class_means(support, support_labels, n_way)
        return -self.distance.matrix(query, prototypes)
