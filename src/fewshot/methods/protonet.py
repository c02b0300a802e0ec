"""Prototypical Networks (Snell et al. 2017).

A class is represented by its prototype, the mean embedding of its support
examples, ``c_k = mean f(x)`` (eq. 1); a query is classified by a softmax over the
negative distances to the prototypes, ``p(y=k|x) = softmax(-d(f(x), c_k))`` (eq. 2),
with squared Euclidean ``d`` by default. Training minimises the cross-entropy of the
queries of N-way K-shot episodes (60-way 5-shot for Omniglot).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.augment import KOCH_DISTORTION
from fewshot.data.dataset import Episode, ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.distances import get_distance
from fewshot.errors import FewShotError
from fewshot.methods.base import BatchSource, Method, accuracy, class_means
from fewshot.methods.registry import METHODS


@METHODS.register("protonet")
class PrototypicalNetworks(Method):
    """Prototypical Networks: nearest class prototype in embedding space.

    Args:
        encoder: the embedding network f.
        distance: ``squared_euclidean`` (the paper's), ``euclidean`` (easyfsl's) or ``cosine``.
        n_way: classes per training episode.
        k_shot: support examples per class in training episodes.
        n_query: query examples per class in training episodes.
        distort: distort every training image by a random affine map (Koch's ranges).
        distort_until: with ``distort``, distort only the episodes before this one and train the
            rest on clean images, as the test images are (default: distort them all).

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
    ) -> None:
        super().__init__(encoder)
        if distance not in self.distances:
            raise FewShotError(f"unknown distance {distance!r} for protonet; valid: {', '.join(self.distances)}")
        if distort_until is not None and not distort:
            raise FewShotError("distort_until only limits distortions; pass distort=True (--distort) with it, "
                               "or leave it out")
        self.distance = get_distance(distance)
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.distort, self.distort_until = distort, distort_until

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        distortion = KOCH_DISTORTION if self.distort else None
        return EpisodeSampler(dataset, self.n_way, self.k_shot, self.n_query, steps, seed, distortion,
                              self.distort_until).episode

    def training_loss(self, batch: Episode) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n_support = len(batch.support)
        embeddings = self.encoder(torch.cat([batch.support, batch.query]))
        scores = self.scores(embeddings[:n_support], batch.support_labels, embeddings[n_support:], batch.n_way)
        loss = F.cross_entropy(scores, batch.query_labels)
        return loss, {"accuracy": accuracy(scores, batch.query_labels)}

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        prototypes = class_means(support, support_labels, n_way)
        return -self.distance.matrix(query, prototypes)
