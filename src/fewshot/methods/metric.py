"""Metric learning: an embedding trained with a metric-learning loss, used by nearest prototype.

The ``metric`` method takes any loss of :data:`~fewshot.losses.LOSSES` with any
distance, on batches of random triplets or of P classes x K images with an in-batch
miner (:data:`~fewshot.miners.MINERS`). The ``triplet`` method is the same method
with seed 003's settings: random triplets, the softmax-ratio loss on L1 distances,
no normalisation. After training, the encoder is used as it is: a query goes to the
class whose prototype (mean support embedding) is nearest under the loss's distance,
so 1-shot classification is nearest-neighbour retrieval.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from fewshot.data.dataset import ImageDataset
from fewshot.data.triplets import MetricBatch, PKSampler, RandomTripletSampler
from fewshot.distances import DISTANCES
from fewshot.errors import FewShotError
from fewshot.losses import LOSSES, build_loss
from fewshot.methods.base import BatchSource, Method, class_means
from fewshot.methods.registry import METHODS
from fewshot.miners import MINERS, build_miner
from fewshot.nets.embedding import L2Normalize

SAMPLERS = ("triplets", "pk")
NO_MINER = "none"


@METHODS.register("metric")
class MetricLearning(Method):
    """Metric learning with any loss, distance, sampler and miner; nearest-prototype classification.

    Args:
        encoder: the embedding network.
        loss: the loss: contrastive, histogram, quadruplet, softmax_ratio, symmetric_margin or triplet_margin.
        distance: distance of the loss, the miner and classification (default: the loss's own).
        miner: which triplets of a batch to train on: all, batch_hard, semi_hard, or none (those the
            triplets sampler drew).
        sampler: triplets (random triplets, seed 003) or pk (P classes x K images per batch).
        batch_size: triplets per batch with the triplets sampler.
        classes_per_batch: P, classes per batch with the pk sampler.
        images_per_class: K, images per class with the pk sampler.
        margin: margin of the margin losses, also used by the semi-hard miner (default: the loss's).
        second_margin: margin of the quadruplet loss's negative-pair term (default: the loss's).
        bins: histogram nodes of the histogram loss (default: the loss's).
        normalize: L2-normalise the embeddings, in training and in use.

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = MetricLearning(build_encoder("conv4", 1, 28), loss="triplet_margin", miner="batch_hard")
        >>> model.set_support(support_images, support_labels)
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "metric"
    gallery_rule = "prototype"
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "loss": tuple(LOSSES.names()), "distance": tuple(DISTANCES.names()),
        "miner": (NO_MINER, *MINERS.names()), "sampler": SAMPLERS,
    }

    def __init__(
        self,
        encoder: nn.Module,
        loss: str = "triplet_margin",
        distance: str | None = None,
        miner: str = "batch_hard",
        sampler: str = "pk",
        batch_size: int = 64,
        classes_per_batch: int = 32,
        images_per_class: int = 4,
        margin: float | None = None,
        second_margin: float | None = None,
        bins: int | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(nn.Sequential(encoder, L2Normalize() if normalize else nn.Identity()))
        if sampler not in SAMPLERS:
            raise FewShotError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
        self.loss = build_loss(loss, distance, margin=margin, second_margin=second_margin, bins=bins)
        self.distance = self.loss.distance
        if miner == NO_MINER:
            if sampler == "pk" and self.loss.uses_triplets:
                raise FewShotError(f"the pk sampler draws no triplets: choose a miner ({', '.join(MINERS.names())}) "
                                   f"or the triplets sampler")
            self.miner = None
        else:
            options = {"margin": getattr(self.loss, "margin", None)} if miner == "semi_hard" else {}
            self.miner = build_miner(miner, self.distance, **options)
        self.sampler = sampler
        self.batch_size, self.classes_per_batch, self.images_per_class = batch_size, classes_per_batch, images_per_class

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        if self.sampler == "triplets":
            return RandomTripletSampler(dataset, self.batch_size, seed, min_classes=self.loss.min_classes).batch
        return PKSampler(dataset, self.classes_per_batch, self.images_per_class, seed,
                         min_classes=self.loss.min_classes).batch

    def training_loss(self, batch: MetricBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss on the batch's triplets (or mined ones); ``accuracy`` is the in-batch precision@1."""
        embeddings = self.encoder(batch.images).float()
        with torch.autocast(embeddings.device.type, enabled=False):  # distances in float32 even under bf16
            triplets = batch.triplets
            if self.miner is not None and self.loss.uses_triplets:
                triplets = self.miner(embeddings, batch.labels)
            loss = self.loss(embeddings, batch.labels, triplets)
            nearest = self.distance.matrix(embeddings.detach(), embeddings.detach()).fill_diagonal_(math.inf).argmin(1)
        return loss, {"accuracy": (batch.labels[nearest] == batch.labels).float().mean()}

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        return -self.distance.matrix(query, class_means(support, support_labels, n_way))


@METHODS.register("triplet")
class TripletNetwork(MetricLearning):
    """Triplet network (seed 003): random triplets, softmax-ratio loss on L1 distances, nearest prototype.

    The ``metric`` method with the seed's settings as defaults; any of them can be changed.

    Args:
        encoder: the embedding network (the seed's: ``triplet_convnet``, 100-d).
        loss: the loss: softmax_ratio (seed 003), symmetric_margin (slides), triplet_margin, quadruplet,
            contrastive or histogram.
        distance: distance of the loss, the miner and classification (default: the loss's own).
        miner: none (train on the random triplets as drawn), or all, batch_hard, semi_hard.
        sampler: triplets (random triplets, seed 003) or pk (P classes x K images per batch).
        batch_size: triplets per batch with the triplets sampler.
        classes_per_batch: P, classes per batch with the pk sampler.
        images_per_class: K, images per class with the pk sampler.
        margin: margin of the margin losses, also used by the semi-hard miner (default: the loss's).
        second_margin: margin of the quadruplet loss's negative-pair term (default: the loss's).
        bins: histogram nodes of the histogram loss (default: the loss's).
        normalize: L2-normalise the embeddings, in training and in use.
    """

    name = "triplet"

    def __init__(
        self,
        encoder: nn.Module,
        loss: str = "softmax_ratio",
        distance: str | None = None,
        miner: str = NO_MINER,
        sampler: str = "triplets",
        batch_size: int = 64,
        classes_per_batch: int = 32,
        images_per_class: int = 4,
        margin: float | None = None,
        second_margin: float | None = None,
        bins: int | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(encoder, loss, distance, miner, sampler, batch_size, classes_per_batch, images_per_class,
                         margin, second_margin, bins, normalize)
