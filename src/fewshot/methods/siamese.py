"""Siamese networks: seed 000's progression to Koch et al. (2015), as four configurations.

A Siamese network judges whether two images show the same class. Its towers embed
each image (``h1 = f(x1)``, ``h2 = g(x2)``) and a head scores the pair; training uses
balanced same/different pairs (:mod:`fewshot.data.pairs`). The four variants differ in
three choices, which are the lesson of the seed:

============================  ================  ==========================================  ===================
variant                       towers            head (score of a pair)                      loss
============================  ================  ==========================================  ===================
``unshared-concat``           two, own weights  ``w . [h1; h2] + b`` (dense + sigmoid)      binary cross-entropy
``shared-concat``             one, shared       ``w . [h1; h2] + b``                        binary cross-entropy
``euclidean-contrastive``     one, shared       ``-||h1 - h2||``                            contrastive, margin m
``koch-l1``                   one, shared       ``w . |h1 - h2| + b`` (Koch eq. 1)          binary cross-entropy
============================  ================  ==========================================  ===================

The concat head is linear in ``[h1; h2]``, so its score is ``w1 . h1 + w2 . h2 + b``:
a sum of one term per image, which cannot express *whether the two agree*. That is
why the seed's first two networks barely beat chance, and why the distance heads work.
In a one-shot episode the query's term is the same for every support example, so the
concat variants rank the classes without looking at the query: exactly chance.

One-shot classification scores each query against each support example and takes the
mean score per class (Koch et al. 2015); scores are the head's logits (or the negative
distance), so 1-shot ranking is that of the probabilities, without the ties a
saturated sigmoid would cause.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.augment import KOCH_DISTORTION
from fewshot.data.dataset import ImageDataset
from fewshot.data.pairs import AllPairsSampler, PairBatch, PairSampler, balanced_pair_mean, hardest_negatives
from fewshot.distances import get_distance
from fewshot.errors import FewShotError
from fewshot.losses import contrastive_loss
from fewshot.methods.base import BatchSource, Method
from fewshot.methods.pair_threshold import best_threshold, score_pairs
from fewshot.methods.registry import METHODS

CALIBRATION_PAIRS = 2000
PAIRINGS = ("koch", "all")


class PairHead(nn.Module, ABC):
    """Scores pairs of tower outputs (higher: more alike), one pair at a time or all against all."""

    @abstractmethod
    def pairwise(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """``h1 [n, d]``, ``h2 [n, d]`` -> ``[n]``: the score of each pair ``(h1[i], h2[i])``."""

    @abstractmethod
    def matrix(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """``query [..., q, d]`` (first input), ``support [..., s, d]`` (second) -> ``[..., q, s]``."""


class ConcatHead(PairHead):
    """Seed 000's head: a dense layer with one output on the concatenation ``[h1; h2]`` (a logit)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(2 * features, 1)

    def pairwise(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return self.dense(torch.cat([h1, h2], -1)).squeeze(-1)

    def matrix(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.dense.weight[0].chunk(2)  # the score splits into a query term and a support term
        return (query @ w1).unsqueeze(-1) + (support @ w2).unsqueeze(-2) + self.dense.bias


class DistanceHead(PairHead):
    """Seed 000's Euclidean distance layer: the score is ``-d(h1, h2)``."""

    def __init__(self, distance: str = "euclidean") -> None:
        super().__init__()
        self.distance = get_distance(distance)

    def pairwise(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return -self.distance.pairwise(h1, h2)

    def matrix(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        return -self.distance.matrix(query, support)


class WeightedL1Head(PairHead):
    """Koch et al. eq. (1): the logit ``sum_j alpha_j |h1_j - h2_j| + b`` (``p = sigmoid`` of it)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(features, 1)

    def pairwise(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return self.dense((h1 - h2).abs()).squeeze(-1)

    def matrix(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        difference = (query.unsqueeze(-2) - support.unsqueeze(-3)).abs_()  # [..., q, s, d]
        return difference @ self.dense.weight[0] + self.dense.bias


@dataclass(frozen=True)
class Variant:
    """One configuration: whether the towers share weights, which head, which loss."""

    shared: bool
    head: str
    loss: str


VARIANTS = {
    "unshared-concat": Variant(shared=False, head="concat", loss="bce"),
    "shared-concat": Variant(shared=True, head="concat", loss="bce"),
    "euclidean-contrastive": Variant(shared=True, head="euclidean", loss="contrastive"),
    "koch-l1": Variant(shared=True, head="weighted_l1", loss="bce"),
}


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with newly initialised weights (the second, unshared tower)."""
    twin = copy.deepcopy(module)
    for m in twin.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return twin


@METHODS.register("siamese")
class SiameseNetwork(Method):
    """Siamese networks: score image pairs, classify a query by its most similar support class.

    Args:
        encoder: the tower (for ``unshared-concat``, the first of two; the second is a fresh copy).
        variant: unshared-concat, shared-concat, euclidean-contrastive (seed 000's three steps) or
            koch-l1 (Koch et al. 2015).
        margin: the contrastive loss's margin m (euclidean-contrastive only).
        batch_size: pairs per training step with koch pairing, half same-class, half different (Koch: 128).
        distort: distort every training image by a random affine map (Koch's ranges).
        thicken: the probability that a training image's strokes are thickened by a random
            amount, for robustness to stroke width (as in transfer from Omniglot to MNIST); 0: never.
        pairing: koch: each anchor image with one same-class and one other-class partner (Koch's
            sampling, PairSampler); all: batches of P classes x K images in which every two images
            form a pair (AllPairsSampler). Either way the loss weighs same and different pairs equally.
        hard_negatives: train each image's same-class pairs against only its hardest different-class
            pair of the batch (batch-hard mining, Hermans et al. 2017), not against all of them.
        classes_per_batch: P, the classes of a batch with all pairing.
        images_per_class: K, the images of each class in a batch with all pairing.

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = SiameseNetwork(build_encoder("conv4", 1, 28), variant="koch-l1")
        >>> model.pair_scores(images_a, images_b).sigmoid()  # probability of the same class
        >>> model.set_support(support_images, support_labels)
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "siamese"
    option_choices = {"variant": tuple(VARIANTS), "pairing": PAIRINGS}
    scores_pairs = True

    def __init__(
        self,
        encoder: nn.Module,
        variant: str = "koch-l1",
        margin: float = 1.0,
        batch_size: int = 128,
        distort: bool = False,
        thicken: float = 0.0,
        pairing: str = "koch",
        hard_negatives: bool = False,
        classes_per_batch: int = 32,
        images_per_class: int = 4,
    ) -> None:
        super().__init__(encoder)
        if variant not in VARIANTS:
            raise FewShotError(f"unknown siamese variant {variant!r}; valid: {', '.join(VARIANTS)}")
        if pairing not in PAIRINGS:
            raise FewShotError(f"unknown siamese pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")
        if margin <= 0:
            raise FewShotError(f"margin must be positive, got {margin}")
        if not 0 <= thicken <= 1:
            raise FewShotError(f"thicken is a probability: pass a value in [0, 1], got {thicken}")
        self.variant_name, self.variant = variant, VARIANTS[variant]
        self.margin, self.batch_size, self.distort, self.thicken = margin, batch_size, distort, thicken
        self.hard_negatives = hard_negatives
        self.pairing, self.classes_per_batch, self.images_per_class = pairing, classes_per_batch, images_per_class
        self.support_encoder = None if self.variant.shared else _fresh_copy(encoder)
        features = encoder.out_features
        heads = {"concat": lambda: ConcatHead(features), "euclidean": lambda: DistanceHead("euclidean"),
                 "weighted_l1": lambda: WeightedL1Head(features)}
        self.head = heads[self.variant.head]()
        self.register_buffer("threshold", torch.tensor(self.default_threshold))

    @property
    def default_threshold(self) -> float:
        """The natural decision threshold on scores: probability 0.5 (logit 0), or distance m / 2."""
        return -self.margin / 2 if self.variant.loss == "contrastive" else 0.0

    @property
    def gallery_rule(self) -> str | None:
        """Galleries rerank index candidates by the pair score; the concat heads ignore the query, so cannot."""
        return None if self.variant.head == "concat" else "pairs"

    @property
    def gallery_refusal(self) -> str:
        return f"the {self.variant_name} variant ranks classes without looking at the query (see this module's notes)"

    @property
    def shared_embedding(self) -> bool:
        """One tower embeds both inputs unless the variant has two (``unshared-concat``)."""
        return self.support_encoder is None

    @property
    def score_is_logit(self) -> bool:
        """Whether a score is a logit (``sigmoid`` gives the probability of "same"), else ``-distance``."""
        return self.variant.loss == "bce"

    def extra_repr(self) -> str:
        return f"variant={self.variant_name!r}"

    def embed_query(self, images: torch.Tensor) -> torch.Tensor:
        """Tower A: the first input of every pair."""
        return self.encoder(images)

    def embed_support(self, images: torch.Tensor) -> torch.Tensor:
        """Tower B (tower A when the weights are shared): the second input."""
        return (self.support_encoder or self.encoder)(images)

    def pair_scores(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Scores ``[n]`` of image pairs ``(left[i], right[i])``; same class iff score > ``threshold``."""
        n = len(left)
        return self.indexed_pair_scores(torch.cat([left, right]), torch.arange(n), torch.arange(n, 2 * n))

    def indexed_pair_scores(self, images: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Scores of the pairs ``(images[left[i]], images[right[i]])``; a shared tower embeds each image once."""
        if self.support_encoder is None:
            h = self.encoder(images)
            return self.head.pairwise(h[left], h[right])
        return self.head.pairwise(self.encoder(images[left]), self.support_encoder(images[right]))

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        distortion = dict(KOCH_DISTORTION) if self.distort else {}
        if self.thicken:
            distortion["thicken"] = self.thicken
        distortion = distortion or None
        if self.pairing == "all":
            return AllPairsSampler(dataset, self.classes_per_batch, self.images_per_class, seed, distortion).batch
        return PairSampler(dataset, self.batch_size, seed, distortion).batch

    def training_loss(self, batch: PairBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scores = self.indexed_pair_scores(batch.images, batch.left, batch.right)
        if self.variant.loss == "contrastive":
            losses = contrastive_loss(-scores, batch.labels, self.margin, reduction="none")
        else:
            losses = F.binary_cross_entropy_with_logits(scores, batch.labels.to(scores.dtype), reduction="none")
        correct = ((scores > self.default_threshold) == (batch.labels > 0.5)).float()
        metrics = {"accuracy": balanced_pair_mean(correct, batch.labels)}
        if self.hard_negatives:
            keep = hardest_negatives(scores, batch) | (batch.labels > 0.5)
            losses, labels = losses[keep], batch.labels[keep]
        else:
            labels = batch.labels
        return balanced_pair_mean(losses, labels), metrics

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        pairs = self.head.matrix(query, support)  # [..., n_query, n_support]
        one_hot = F.one_hot(support_labels, n_way).to(pairs.dtype)
        return (pairs @ one_hot) / one_hot.sum(0)  # mean score per class

    @torch.no_grad()
    def calibrate(self, dataset: ImageDataset, n_pairs: int = CALIBRATION_PAIRS, seed: int = 0) -> float:
        """Set :attr:`threshold` to the one most accurate on ``n_pairs`` pairs of ``dataset``; return that accuracy."""
        was_training = self.training
        self.eval()
        pairs = PairSampler(dataset, n_pairs, seed).batch(0)
        device = self.threshold.device
        threshold, accuracy = best_threshold(score_pairs(self, pairs, device), pairs.labels)
        self.threshold.fill_(threshold)
        self.train(was_training)
        return accuracy

    def calibrate_on_validation(self, dataset: ImageDataset, seed: int) -> None:
        """Set :attr:`threshold` on pairs of the validation classes (:meth:`calibrate`), when there are two."""
        if dataset.num_classes >= 2:
            self.calibrate(dataset, seed=seed)
