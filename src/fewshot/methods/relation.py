"""Relation Networks (Sung et al. 2018): a learned distance between a query and a class.

The embedding module keeps feature maps (64 x 5 x 5 for Omniglot at 28 x 28, see
:class:`~fewshot.nets.relation_encoder.RelationEncoder`); a class's map pools its support maps:
their mean by default, their sum as in the paper (section 3.3) by option. The two agree on
1-shot classes; a model trained on 1-shot episodes reads 5-shot classes only with the mean (a sum
is five times what it was trained on, and 20-way 5-shot accuracy falls to about a quarter,
docs/benchmarks.md), and a gallery's classes hold different numbers of examples. The relation module scores each (query, class) pair,
``r = g([f(x_j), f(x_c)])`` (eq. 1): the two maps concatenated, two conv blocks, FC 8, FC 1 and a
sigmoid, trained by the mean squared error against 1 for the query's own class and 0 for the
others (eq. 2); or, by option, the cross-entropy of a softmax over the pre-sigmoid relations.

The first convolution of the relation module is linear in its concatenated input, so it is
computed once per query map and once per class map and the two are added for each pair: the
same numbers as convolving every concatenated pair, at (Q + N) convolutions instead of Q x N.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewShotError
from fewshot.methods.base import class_means
from fewshot.methods.episodic import EpisodicMethod
from fewshot.methods.registry import METHODS


class RelationModule(nn.Module):
    """``g``: relation logits ``[..., n_query, n_way]`` of query maps against class maps."""

    def __init__(self, feature_shape: tuple[int, int, int], hidden: int = 8) -> None:
        super().__init__()
        channels, height, width = feature_shape
        self.feature_shape = feature_shape
        self.query_conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)  # the query half of conv 1
        self.class_conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)  # the class half
        self.first = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.second = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=3, padding=1),
                                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        side = (height // 2 // 2) * (width // 2 // 2)
        if side < 1:
            raise FewShotError(f"feature maps of {height}x{width} are too small for the relation module's two "
                               "poolings; use larger images")
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * side, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, 1))

    def forward(self, query: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``query [..., q, D]``, ``classes [..., n, D]`` (flattened maps) -> logits ``[..., q, n]``."""
        lead, q, n = query.shape[:-2], query.shape[-2], classes.shape[-2]
        queries = self.query_conv(query.reshape(-1, *self.feature_shape))
        classes = self.class_conv(classes.reshape(-1, *self.feature_shape))
        queries = queries.view(-1, q, 1, *queries.shape[1:])
        classes = classes.view(-1, 1, n, *classes.shape[1:])
        pairs = (queries + classes).flatten(0, 2)  # conv 1 of every concatenated pair
        logits = self.fc(self.second(self.first(pairs)))
        return logits.view(*lead, q, n)


@METHODS.register("relation")
class RelationNetworks(EpisodicMethod):
    """Relation Networks: a small network learns to compare a query's feature maps with a class's.

    The training episodes' options (``n_way``, ``k_shot``, ``n_query``, ``distort``, ``distort_until``,
    ``within_alphabet``)
    are those of :class:`~fewshot.methods.episodic.EpisodicMethod`.

    Args:
        encoder: the embedding module; it must keep feature maps (``relation_conv4``, the default).
        loss: ``mse`` (the paper's: sigmoid relation scores against one-hot targets) or
            ``cross_entropy`` (softmax over the relation logits).
        hidden: width of the relation module's first fully connected layer (the paper's 8).
        pool: a class's map from its support maps: ``mean``, or ``sum`` (the paper's, for models
            trained and tested at the same number of shots).

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = RelationNetworks(build_encoder("relation_conv4", 1, 28))
        >>> model.set_support(support_images, support_labels)
        >>> relations = model.classify(query_images)  # in [0, 1]
    """

    name = "relation"
    default_encoder = "relation_conv4"
    gallery_rule = "pairs"
    losses = ("mse", "cross_entropy")
    pools = ("mean", "sum")
    option_choices = {"loss": losses, "pool": pools}

    def __init__(
        self,
        encoder: nn.Module,
        loss: str = "mse",
        hidden: int = 8,
        pool: str = "mean",
        n_way: int = 5,
        k_shot: int = 1,
        n_query: int = 19,
        distort: bool = False,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        super().__init__(encoder, n_way, k_shot, n_query, distort, distort_until, within_alphabet)
        if loss not in self.losses:
            raise FewShotError(f"unknown loss {loss!r} for relation; valid: {', '.join(self.losses)}")
        if pool not in self.pools:
            raise FewShotError(f"unknown pool {pool!r} for relation; valid: {', '.join(self.pools)}")
        feature_shape = getattr(encoder, "feature_shape", None)
        if feature_shape is None:
            raise FewShotError("relation needs an encoder that keeps feature maps: pass --encoder relation_conv4")
        self.loss, self.pool = loss, pool
        self.relation = RelationModule(tuple(feature_shape), hidden)

    def extra_repr(self) -> str:
        return f"loss={self.loss!r}, pool={self.pool!r}"

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        """Relation scores in [0, 1] (``mse``) or relation logits (``cross_entropy``), ``[..., n_query, n_way]``."""
        if self.pool == "mean":
            class_maps = class_means(support, support_labels, n_way)
        else:
            class_maps = F.one_hot(support_labels, n_way).to(support.dtype).T @ support
        logits = self.relation(query, class_maps)
        return logits.sigmoid() if self.loss == "mse" else logits

    def episode_loss(self, scores: torch.Tensor, query_labels: torch.Tensor) -> torch.Tensor:
        if self.loss == "mse":
            return F.mse_loss(scores.float(), F.one_hot(query_labels, scores.shape[-1]).float())
        return F.cross_entropy(scores, query_labels)
