"""Episodic training, shared by the methods trained on N-way K-shot episodes.

"The training task is the same as the test task" (Vinyals et al. 2016): every batch is an
episode, the support is embedded, the queries are scored by the method's own
:meth:`~fewshot.methods.base.Method.scores`, and the loss is taken on those scores. A method
on episodes is then its scores and, if it is not the cross-entropy, its :meth:`episode_loss`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.augment import KOCH_DISTORTION
from fewshot.data.dataset import Episode, ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError
from fewshot.methods.base import BatchSource, Method, accuracy


class EpisodicMethod(Method):
    """A method trained on episodes: N-way K-shot Q-query, optionally distorted (Koch's affine maps).

    Subclasses implement :meth:`~fewshot.methods.base.Method.scores` and take the episode options
    below as keyword arguments of their own ``__init__`` (they are its CLI flags).

    Args:
        encoder: the embedding network.
        n_way: classes per training episode.
        k_shot: support examples per class in training episodes.
        n_query: query examples per class in training episodes.
        distort: distort every training image by a random affine map (Koch's ranges).
        distort_until: with ``distort``, distort only the episodes before this one and train the
            rest on clean images, as the test images are (default: distort them all).
        within_alphabet: draw all classes of each training episode from one alphabet, as Lake et al.'s
            one-shot test draws them (harder episodes: similar characters side by side).
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_way: int,
        k_shot: int,
        n_query: int,
        distort: bool = False,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        super().__init__(encoder)
        if distort_until is not None and not distort:
            raise FewShotError("distort_until only limits distortions; pass distort=True (--distort) with it, "
                               "or leave it out")
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.distort, self.distort_until = distort, distort_until
        self.within_alphabet = within_alphabet

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        distortion = KOCH_DISTORTION if self.distort else None
        return EpisodeSampler(dataset, self.n_way, self.k_shot, self.n_query, steps, seed, distortion,
                              self.distort_until, self.within_alphabet).episode

    def training_loss(self, batch: Episode) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n_support = len(batch.support)
        embeddings = self.encoder(torch.cat([batch.support, batch.query]))
        scores = self.scores(embeddings[:n_support], batch.support_labels, embeddings[n_support:], batch.n_way)
        return self.episode_loss(scores, batch.query_labels), {"accuracy": accuracy(scores, batch.query_labels)}

    def check_learner_ways(self, n_way: int) -> None:
        """Refuse an episode of another width than the ``n_way`` output layer of a method that classifies with a
        learner adapted per episode (MAML, Meta-LSTM)."""
        if n_way != self.n_way:
            raise FewShotError(f"this {self.name} learner has a {self.n_way}-way output layer and cannot classify "
                               f"{n_way}-way episodes; evaluate it with --ways {self.n_way} (and validate with "
                               f"--val-way {self.n_way}), or train one with --n-way {n_way}")

    def episode_loss(self, scores: torch.Tensor, query_labels: torch.Tensor) -> torch.Tensor:
        """The loss on the queries' class scores: the cross-entropy of their softmax."""
        return F.cross_entropy(scores, query_labels)
