"""A Mahalanobis classifier (Simple CNAPS, Bateni et al. 2020): a covariance per class.

A query's score for class k is minus its squared Mahalanobis distance to the class mean,
``-(x - mu_k)^T Q_k^{-1} (x - mu_k)`` (eq. 2), with the class covariance shrunk toward the
episode's, ``Q_k = l_k S_k + (1 - l_k) S_task + b I`` and ``l_k = n_k / (n_k + 1)`` (eq. 3).
``S_k`` is the sample covariance of the class's support embeddings and ``S_task`` that of the
whole support set. One example has no covariance: a 1-shot class takes ``S_k = 0``, so its
``Q_k = S_task / 2 + b I``; a task of one example takes ``S_task = 0`` too, and the score is then
minus the squared Euclidean distance. ``Q_k^{-1} d`` is solved by Cholesky, never by inversion.

It trains as a head on episodes, or classifies at test time on any trained embedding
(``fewshot evaluate RUN --head mahalanobis``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.distances import full_precision
from fewshot.errors import FewShotError
from fewshot.methods.base import class_means
from fewshot.methods.episodic import EpisodicMethod
from fewshot.methods.registry import METHODS


def covariance(x: torch.Tensor, weights: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Sample covariances of the rows of ``x [..., n, d]`` selected by ``weights [g, n]`` (0/1) -> ``[..., g, d, d]``.

    Groups of one row get a zero covariance (the unbiased estimate divides by n - 1 = 0).
    """
    counts = weights.sum(-1)  # [g]
    centred = x.unsqueeze(-3) - mean.unsqueeze(-2)  # [..., g, n, d]
    centred = centred * weights.unsqueeze(-1)
    scatter = centred.transpose(-1, -2) @ centred
    return scatter / (counts - 1).clamp_min(1).view(-1, 1, 1)


def mahalanobis_scores(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int,
                       ridge: float = 1.0) -> torch.Tensor:
    """Minus squared Mahalanobis distances ``[..., n_query, n_way]`` under shrunk class covariances (eq. 2-3)."""
    with full_precision(support):
        support, query = support.float(), query.float()
        owner = F.one_hot(support_labels, n_way).T.float()  # [n_way, n_support]
        counts = owner.sum(-1)
        means = class_means(support, support_labels, n_way)  # [..., n_way, d]
        per_class = covariance(support, owner, means)
        task = covariance(support, torch.ones(1, support.shape[-2], device=support.device),
                          support.mean(-2, keepdim=True))  # [..., 1, d, d]
        shrink = (counts / (counts + 1)).view(-1, 1, 1)
        eye = torch.eye(support.shape[-1], device=support.device)
        q = shrink * per_class + (1 - shrink) * task + ridge * eye
        cholesky = torch.linalg.cholesky(q)  # [..., n_way, d, d]
        diff = query.unsqueeze(-3) - means.unsqueeze(-2)  # [..., n_way, n_query, d]
        solved = torch.linalg.solve_triangular(cholesky, diff.transpose(-1, -2), upper=False)
        return -solved.pow(2).sum(-2).transpose(-1, -2)


@METHODS.register("mahalanobis")
class MahalanobisClassifier(EpisodicMethod):
    """Nearest class mean under each class's own shrunk covariance (Simple CNAPS).

    The training episodes' options (``n_way``, ``k_shot``, ``n_query``, ``distort``, ``distort_until``,
    ``within_alphabet``)
    are those of :class:`~fewshot.methods.episodic.EpisodicMethod`.

    Args:
        encoder: the embedding network.
        ridge: b, the multiple of the identity added to every covariance (the paper's 1).

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = MahalanobisClassifier(build_encoder("conv4", 1, 28))
        >>> model.set_support(support_images, support_labels)
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "mahalanobis"
    gallery_rule = "pairs"

    def __init__(
        self,
        encoder: nn.Module,
        ridge: float = 1.0,
        n_way: int = 20,
        k_shot: int = 5,
        n_query: int = 5,
        distort: bool = False,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        super().__init__(encoder, n_way, k_shot, n_query, distort, distort_until, within_alphabet)
        if not ridge > 0:
            raise FewShotError(f"ridge must be positive (it keeps every covariance invertible), got {ridge}")
        self.ridge = ridge

    def extra_repr(self) -> str:
        return f"ridge={self.ridge}"

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        return mahalanobis_scores(support, support_labels, query, n_way, self.ridge)
