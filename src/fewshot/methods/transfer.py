"""The transfer-learning baseline (Chen et al. 2019, "A Closer Look at Few-shot Classification").

Pre-training is ordinary classification: mini-batches of labelled background images and the
cross-entropy of a head over all training classes. Baseline's head is linear, ``W f(x) + b``;
Baseline++'s is cosine (section 3.2): ``s * cos(f(x), w_k)``, with class-wise weight
normalisation ``w_k = g_k v_k / ||v_k||`` (a learned norm ``g_k`` per class, as in the authors'
code) and a fixed scale ``s`` (theirs: 2 for up to 200 classes, 10 above).

At test time the head is dropped and an episode is classified from the encoder's L2-normalised
features, either by the nearest class mean under the cosine distance (the slides' rule; scores
``s (cos - 1)``, as sharp as the training head's logits for a rule that reads them as a softmax,
such as refinement by the queries), or by a new head of the training head's kind fitted to the
support set (the paper's fine-tuning). The new head starts at the class means (weight imprinting,
Qi et al. 2018: the nearest-mean classifier itself) and takes a fixed number of full-batch gradient
steps with momentum 0.9 and weight decay 0.001 (the paper's optimiser), its gradients written out
by hand: no autograd, every episode of a batch fitted at once, so the evaluator's cached embeddings
serve it as they serve a prototype.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.dataset import ImageDataset
from fewshot.data.triplets import MetricBatch, PKSampler
from fewshot.distances import full_precision, get_distance
from fewshot.errors import FewShotError
from fewshot.methods.base import BatchSource, Method, accuracy, class_means
from fewshot.methods.registry import METHODS
from fewshot.nets.embedding import L2Normalize

HEADS = ("linear", "cosine")
CLASSIFIERS = ("nearest_mean", "fit_head")
MOMENTUM, WEIGHT_DECAY = 0.9, 1e-3  # Chen et al.'s fine-tuning optimiser (SGD)
Tensors = tuple[torch.Tensor, ...]


def default_scale(n_classes: int) -> float:
    """The cosine head's fixed scale in the authors' code: 2 for up to 200 classes, 10 above."""
    return 2.0 if n_classes <= 200 else 10.0


class CosineHead(nn.Module):
    """Baseline++'s head: ``s * cos(f(x), w_k)`` with ``w_k = g_k v_k / ||v_k||`` (class-wise weight norm).

    ``g_k`` starts at ``||v_k||`` (weight normalisation's start), so the head starts as a plain cosine
    classifier with weights ``v_k``; a class's logits lie in ``[-s g_k, s g_k]``.
    """

    def __init__(self, in_features: int, n_classes: int, scale: float) -> None:
        super().__init__()
        linear = nn.Linear(in_features, n_classes, bias=False)
        self.direction = nn.Parameter(linear.weight.detach().clone())
        self.gain = nn.Parameter(self.direction.detach().norm(dim=1))
        self.scale = scale

    def weight(self) -> torch.Tensor:
        """The class weights ``w_k = g_k v_k / ||v_k||``, ``[n_classes, in_features]``."""
        return self.gain.unsqueeze(1) * F.normalize(self.direction, dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=-1) @ self.weight().T

    def extra_repr(self) -> str:
        return f"in_features={self.direction.shape[1]}, n_classes={self.direction.shape[0]}, scale={self.scale:g}"


def descend(params: Tensors, gradients: Callable[..., Tensors], steps: int, lr: float,
            retract: Callable[..., Tensors] | None = None) -> Tensors:
    """``steps`` of gradient descent with momentum ``MOMENTUM`` and weight decay ``WEIGHT_DECAY`` on ``params``,
    ``gradients(*params)`` giving the loss's gradients; ``retract(*params)`` maps each step back onto the
    parameters' constraint set."""
    velocity = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        for v, g, p in zip(velocity, gradients(*params), params, strict=True):
            v.mul_(MOMENTUM).add_(g + WEIGHT_DECAY * p)
        params = tuple(p - lr * v for p, v in zip(params, velocity, strict=True))
        if retract is not None:
            params = retract(*params)
    return params


def fit_linear_head(support: torch.Tensor, support_labels: torch.Tensor, n_way: int, steps: int,
                    lr: float) -> Tensors:
    """A linear head ``(W [..., n_way, d], b [..., n_way])`` fitted to the support ``[..., n, d]`` of each episode.

    It starts at the squared-Euclidean nearest-mean rule (``W_k = c_k``, ``b_k = -||c_k||^2 / 2``) and
    descends the mean cross-entropy, whose gradients are ``E^T X`` and ``sum E`` with
    ``E = (softmax(X W^T + b) - Y) / n``.
    """
    targets = F.one_hot(support_labels, n_way).float()
    weight = class_means(support, support_labels, n_way)

    def gradients(weight: torch.Tensor, bias: torch.Tensor) -> Tensors:
        error = ((support @ weight.mT + bias.unsqueeze(-2)).softmax(-1) - targets) / support.shape[-2]
        return error.mT @ support, error.sum(-2)

    return descend((weight, -0.5 * weight.pow(2).sum(-1)), gradients, steps, lr)


def fit_cosine_head(support: torch.Tensor, support_labels: torch.Tensor, n_way: int, steps: int, lr: float,
                    scale: float) -> Tensors:
    """A cosine head ``(u [..., n_way, d], g [..., n_way])`` fitted to the support ``[..., n, d]`` of each episode.

    Logits ``s g_k cos(x, u_k)`` with unit directions ``u_k`` (weight normalisation with ``||v_k||`` held at 1,
    which leaves the logits as they are and keeps the step size of a direction from growing as its norm
    shrinks); it starts at the nearest class mean (``u_k = c_k / ||c_k||``, ``g_k = 1``). With ``E`` as for
    the linear head, the gradients are ``s sum(E cos)`` for ``g`` and ``(I - u u^T) s g E^T X`` for ``u``, and
    each step is projected back onto unit directions.
    """
    support = F.normalize(support, dim=-1)
    targets = F.one_hot(support_labels, n_way).float()

    def gradients(unit: torch.Tensor, gain: torch.Tensor) -> Tensors:
        cosine = support @ unit.mT  # [..., n, n_way]
        error = ((scale * gain.unsqueeze(-2) * cosine).softmax(-1) - targets) / support.shape[-2]
        grad_unit = scale * gain.unsqueeze(-1) * (error.mT @ support)
        return grad_unit - unit * (unit * grad_unit).sum(-1, keepdim=True), scale * (error * cosine).sum(-2)

    def retract(unit: torch.Tensor, gain: torch.Tensor) -> Tensors:
        return F.normalize(unit, dim=-1), gain

    unit = F.normalize(class_means(support, support_labels, n_way), dim=-1)
    return descend((unit, torch.ones(unit.shape[:-1], device=unit.device)), gradients, steps, lr, retract)


@METHODS.register("transfer")
class TransferBaseline(Method):
    """Transfer baseline (Chen et al. 2019): a classifier pre-trained on all background classes, its head dropped.

    Trained on batches of P classes x K images (the metric methods' sampler) with the cross-entropy
    of a head over all ``n_classes`` outputs; tested on L2-normalised features by ``classifier``.

    Args:
        encoder: the feature network f.
        head: the training head: linear (Baseline) or cosine (Baseline++: class-wise weight norm, fixed scale).
        classifier: the test-time rule: nearest_mean (cosine to the class means of the support; the only
            rule a gallery can use) or fit_head (a new head of the training head's kind fitted to each
            episode's support).
        n_classes: outputs of the training head; at least the training set's classes (unused outputs are
            harmless; the authors used 4112 for Omniglot).
        scale: the cosine heads' fixed scale s (default: the authors', 2 for up to 200 outputs, 10 above).
        classes_per_batch: P, classes per training batch.
        images_per_class: K, images per class in a training batch.
        head_steps: fit_head: full-batch gradient steps on each episode's support (0: the nearest-mean start).
        head_lr: fit_head: the step size of those steps.

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = TransferBaseline(build_encoder("conv4", 1, 28), head="cosine", n_classes=3252)
        >>> model.set_support(support_images, support_labels)
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "transfer"
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"head": HEADS, "classifier": CLASSIFIERS}

    def __init__(
        self,
        encoder: nn.Module,
        head: str = "cosine",
        classifier: str = "nearest_mean",
        n_classes: int = 200,
        scale: float | None = None,
        classes_per_batch: int = 64,
        images_per_class: int = 2,
        head_steps: int = 100,
        head_lr: float = 0.5,
    ) -> None:
        features = getattr(encoder, "out_features", None)
        if features is None:
            raise FewShotError("transfer needs an encoder with an out_features attribute (conv4 has one)")
        normalized = nn.Sequential(encoder, L2Normalize())
        normalized.out_features = features
        super().__init__(normalized)
        if head not in HEADS:
            raise FewShotError(f"unknown head {head!r} for transfer; pass --head linear (Baseline) or cosine "
                               f"(Baseline++)")
        if classifier not in CLASSIFIERS:
            raise FewShotError(f"unknown classifier {classifier!r} for transfer; pass --classifier nearest_mean "
                               f"or fit_head")
        if n_classes < 2:
            raise FewShotError(f"n_classes (outputs of the training head) must be at least 2, got {n_classes}; "
                               f"pass --n-classes with the training set's number of classes or more")
        if scale is not None and not (scale > 0 and math.isfinite(scale)):
            raise FewShotError(f"scale must be a positive number, got {scale}; leave it out for the authors' "
                               f"(2 up to 200 classes, 10 above)")
        if head_steps < 0 or not head_lr > 0:
            raise FewShotError(f"head_steps must be >= 0 and head_lr positive, got {head_steps} and {head_lr}")
        self.head, self.classifier, self.n_classes, self.scale = head, classifier, n_classes, scale
        self.classes_per_batch, self.images_per_class = classes_per_batch, images_per_class
        self.head_steps, self.head_lr = head_steps, head_lr
        self.distance = get_distance("cosine")
        self.classifier_head = (nn.Linear(features, n_classes) if head == "linear"
                                else CosineHead(features, n_classes, scale or default_scale(n_classes)))

    @property
    def gallery_rule(self) -> str | None:
        """Nearest class mean is a prototype rule; a head fitted to the support depends on every class at once."""
        return "prototype" if self.classifier == "nearest_mean" else None

    @property
    def gallery_refusal(self) -> str:
        return ("with classifier fit_head a class's score comes from a head fitted to all classes together; "
                "a transfer run with classifier nearest_mean can serve one")

    def extra_repr(self) -> str:
        return f"head={self.head!r}, classifier={self.classifier!r}"

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        if dataset.num_classes > self.n_classes:
            raise FewShotError(f"{dataset.name} has {dataset.num_classes} training classes but the head has "
                               f"n_classes = {self.n_classes} outputs; pass --n-classes {dataset.num_classes} "
                               f"(or more)")
        return PKSampler(dataset, self.classes_per_batch, self.images_per_class, seed).batch

    def training_loss(self, batch: MetricBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The cross-entropy over all training classes of the head on the encoder's (unnormalised) features."""
        features = self.encoder[0](batch.images)
        with full_precision(features):
            logits = self.classifier_head(features.float())
        return F.cross_entropy(logits, batch.labels), {"accuracy": accuracy(logits.detach(), batch.labels)}

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        with full_precision(support):
            support, query = support.float(), query.float()
            if self.classifier == "nearest_mean":
                scale = self.scale or default_scale(self.n_classes)
                return -scale * self.distance.matrix(query, class_means(support, support_labels, n_way))
            if self.head == "linear":
                weight, bias = fit_linear_head(support, support_labels, n_way, self.head_steps, self.head_lr)
                return query @ weight.mT + bias.unsqueeze(-2)
            scale = self.scale or default_scale(n_way)
            unit, gain = fit_cosine_head(support, support_labels, n_way, self.head_steps, self.head_lr, scale)
            return scale * gain.unsqueeze(-2) * (F.normalize(query, dim=-1) @ unit.mT)
