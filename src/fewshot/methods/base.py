"""What every few-shot method is: a loss to train it and a rule to classify queries.

Like easyfsl, every method has the same two verbs: :meth:`Method.set_support` takes a
labelled support set, :meth:`Method.classify` scores queries against it. Training is
shared (:mod:`fewshot.training`): a method only says how to draw its training batches
(:meth:`Method.training_batches`) and what loss to take on one
(:meth:`Method.training_loss`). Its options are its ``__init__`` keyword arguments,
documented in an ``Args:`` section, which the CLI turns into flags.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.dataset import ImageDataset
from fewshot.distances import full_precision
from fewshot.errors import FewShotError

Batch = Any
BatchSource = Callable[[int], Batch]


class Method(nn.Module, ABC):
    """Base class of the few-shot methods.

    Subclasses set ``name`` and implement :meth:`training_batches`,
    :meth:`training_loss` and :meth:`scores`. A method whose embedding of an image does
    not depend on the episode (``episode_independent = True``) lets the evaluator embed
    each test image once and score thousands of episodes from cached embeddings.

    Example:
        >>> model, config = load_run("runs/proto")
        >>> model.set_support(support_images, support_labels)
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name: ClassVar[str]
    episode_independent: ClassVar[bool] = True
    default_encoder: ClassVar[str] = "conv4"
    #: How a gallery (:mod:`fewshot.gallery`) recognises with this method. ``"prototype"``: a query's
    #: class scores are minus a distance to each class mean, so a search over the means finds the
    #: answer; ``"pairs"``: scores combine a pair score over each class's examples, so a search over
    #: the examples finds candidates and :meth:`scores` reranks them (coarse to fine); ``None``: the
    #: method cannot serve a gallery, and :attr:`gallery_refusal` says why.
    gallery_rule: ClassVar[str | None] = None
    gallery_refusal: ClassVar[str] = "its scores are not a comparison of one query with stored examples"
    #: Whether :attr:`encoder` maps one image to an embedding on its own, so that another classify rule
    #: (a test-time head, :mod:`fewshot.evaluation.heads`) can use it.
    embeds_images: ClassVar[bool] = True
    #: Whether classifying takes gradient steps on the support set (an inner loop, a head fitted per
    #: episode). The evaluator then runs under ``torch.no_grad`` instead of ``torch.inference_mode``
    #: (:func:`test_time_mode`), and the method turns gradients on for its inner loop only, on copies
    #: of its weights: the saved weights never change.
    adapts_at_test_time: ClassVar[bool] = False
    #: Whether :meth:`embed_support` and :meth:`embed_query` are one network, so the evaluator embeds each
    #: image once for both. A method that embeds queries with another network says ``False``.
    shared_embedding: ClassVar[bool] = True
    #: Whether the method judges pairs of images same or different (``fewshot verify``): it has
    #: ``pair_scores(left, right) -> [n]``, a ``threshold`` buffer (same iff score > threshold) and
    #: ``score_is_logit``, like :class:`~fewshot.methods.siamese.SiameseNetwork`.
    scores_pairs: ClassVar[bool] = False
    #: Whether the method is validated and tested the way Santoro et al. (2016) measure MANNs: on sequence
    #: episodes of its own ``n_classes`` and ``instances``, by accuracy at each instance number
    #: (:mod:`fewshot.evaluation.instances`), not on N-way K-shot episodes. It has
    #: ``sequence_episodes(dataset, seed, batch_size)`` and ``predict(batch, views)``, like
    #: :class:`~fewshot.methods.mann.MANN`.
    evaluates_by_instance: ClassVar[bool] = False

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self._support: tuple[torch.Tensor, torch.Tensor, int] | None = None

    @abstractmethod
    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        """A function ``step -> batch`` drawing the training batches; batch ``i`` depends only on ``(seed, i)``."""

    @abstractmethod
    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss on one batch (already on the model's device) and metrics such as ``accuracy``.

        Metrics are 0-d tensors, without gradient; the trainer reads them after the step, so a
        compiled loss (``compile: true``) runs without a break for ``.item()``.
        """

    def check_compile(self) -> None:
        """Raise :class:`~fewshot.errors.FewShotError` if compiling :meth:`training_loss` cannot pay off.

        The trainer compiles :meth:`training_loss` for one batch shape (``dynamic=False``); each new
        shape is a new compile, minutes long. Methods whose batches change shape say so here.
        """

    @abstractmethod
    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        """Class scores (higher is more likely) of embedded queries.

        Args:
            support: support embeddings ``[..., n_support, d]``; leading dims are episodes.
            support_labels: episode labels ``[n_support]`` in ``0 .. n_way - 1``, shared by all episodes.
            query: query embeddings ``[..., n_query, d]``.
            n_way: number of classes in the episode.

        Returns:
            ``[..., n_query, n_way]`` scores.
        """

    def embed_support(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of support images ``[b, c, h, w] -> [b, d]``."""
        return self.encoder(images)

    def embed_query(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of query images; the same network as the support unless a method says otherwise."""
        return self.encoder(images)

    def set_support(self, support: torch.Tensor, support_labels: torch.Tensor) -> None:
        """Take a labelled support set (images ``[n, c, h, w]``, labels ``0 .. n_way - 1``)."""
        self._support = (self.embed_support(support), support_labels, int(support_labels.max()) + 1)

    def classify(self, query: torch.Tensor) -> torch.Tensor:
        """Scores ``[n_query, n_way]`` of query images against the support set given last."""
        if self._support is None:
            raise RuntimeError("call set_support(support, support_labels) before classify(query)")
        support, labels, n_way = self._support
        return self.scores(support, labels, self.embed_query(query), n_way)

    def check_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Raise :class:`~fewshot.errors.FewShotError` if the weights are of another configuration of this
        method, naming both; the default relies on the key and shape comparison of the loader."""

    def calibrate_on_validation(self, dataset: ImageDataset, seed: int) -> None:
        """Fit what the method decides with beyond its weights (a threshold) on the validation classes.

        The trainer calls it before each validation, so the saved model carries the calibration of its
        weights; the default has nothing to fit.
        """


def test_time_mode(method: Method) -> contextlib.AbstractContextManager:
    """The context to classify in: ``torch.inference_mode()``, or ``torch.no_grad()`` for a method that
    :attr:`~Method.adapts_at_test_time` (no inner-loop gradient can be taken under inference mode)."""
    return torch.no_grad() if method.adapts_at_test_time else torch.inference_mode()


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Per-class mean of ``embeddings [..., n, d]`` -> ``[..., n_way, d]`` (the prototypes), in float32."""
    with full_precision(embeddings):
        one_hot = F.one_hot(labels, n_way).float()
        return (one_hot.T @ embeddings.float()) / one_hot.sum(0).unsqueeze(-1)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose highest score is at the true label, as a 0-d tensor."""
    return (scores.argmax(-1) == labels).float().mean()


def check_positive_integers(method: str, **options: object) -> None:
    """Raise :class:`~fewshot.errors.FewShotError` naming the first of ``method``'s ``options`` that is not a
    positive integer.

    Example:
        >>> check_positive_integers("maml", inner_steps=1, vmap_tasks=32)
    """
    for what, value in options.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FewShotError(f"{method} option {what} must be a positive integer, got {value!r}")
