"""Matching Networks (Vinyals et al. 2016), with and without full context embeddings.

A query's label distribution is an attention-weighted vote of the support labels,
``p(y|x) = sum_i a(x, x_i) y_i`` (eq. 1), the attention a softmax over a similarity
``c(f(x), g(x_i))`` (eq. 2): cosine times a learned scale (a bare cosine in [-1, 1] makes a
nearly flat softmax), or minus the Euclidean distance.

Full context embeddings (section 2.1.2 and appendix A.2) make the embeddings depend on the
support set: ``g(x_i) = h_fwd_i + h_bwd_i + g'(x_i)``, a bidirectional LSTM over the support
embeddings ``g'`` with a skip connection; ``f(x) = attLSTM(f'(x), g(S), K)``, an LSTM that
reads the support for K steps, ``h_k, c_k = LSTM(f'(x), [h_{k-1}, r_{k-1}], c_{k-1})``,
``h_k = h_k + f'(x)``, ``r_k = sum_i softmax(h_{k-1} . g(x_i)) g(x_i)``, with ``f(x) = h_K``.

Both act on the convolutional embeddings, inside :meth:`MatchingNetworks.scores`, so the
evaluator still embeds each test image once and scores many episodes at a time. The LSTM
depends on the order of the support; training episodes present their support shuffled.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.dataset import Episode, ImageDataset
from fewshot.distances import EuclideanDistance, full_precision
from fewshot.errors import FewShotError
from fewshot.methods.base import BatchSource
from fewshot.methods.episodic import EpisodicMethod
from fewshot.methods.registry import METHODS
from fewshot.seeding import generator

SHUFFLE_KEY = 2  # generator(seed, i, SHUFFLE_KEY) orders the support of training episode i


class SupportContext(nn.Module):
    """``g``: a bidirectional LSTM over the support embeddings, plus the embeddings themselves."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, features, batch_first=True, bidirectional=True)

    def forward(self, support: torch.Tensor) -> torch.Tensor:
        """``[episodes, n_support, d] -> [episodes, n_support, d]``."""
        out, _ = self.lstm(support)
        forward, backward = out.chunk(2, dim=-1)
        return support + forward + backward


class AttentionReader(nn.Module):
    """``f``: an LSTM that reads the (context-embedded) support for ``steps`` steps per query."""

    def __init__(self, features: int, steps: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(features, 2 * features)
        self.steps = steps

    def forward(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """``query [e, q, d]``, ``support [e, s, d]`` -> ``[e, q, d]``."""
        e, q, d = query.shape
        x = query.reshape(e * q, d)
        h = torch.zeros_like(x)
        readout = torch.zeros_like(x)
        c = x.new_zeros(e * q, 2 * d)
        for _ in range(self.steps):
            state, c = self.cell(x, (torch.cat([h, readout], -1), c))
            h = state[:, :d] + x
            attention = torch.einsum("eqd,esd->eqs", h.view(e, q, d), support).softmax(-1)
            readout = torch.einsum("eqs,esd->eqd", attention, support).reshape(e * q, d)
        return h.view(e, q, d)


@METHODS.register("matching")
class MatchingNetworks(EpisodicMethod):
    """Matching Networks: attention over the support set, optionally with full context embeddings.

    The training episodes' options (``n_way``, ``k_shot``, ``n_query``, ``distort``, ``distort_until``,
    ``within_alphabet``)
    are those of :class:`~fewshot.methods.episodic.EpisodicMethod`.

    Args:
        encoder: the embedding network (g' and f', shared).
        similarity: ``cosine`` (times a learned scale) or ``euclidean`` (minus the distance).
        fce: full context embeddings: a bidirectional LSTM over the support, an attention LSTM for queries.
        fce_steps: K, the attention LSTM's processing steps over the support.
        scale: initial value of the learned scale of the cosine similarity.

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = MatchingNetworks(build_encoder("conv4", 1, 28), fce=True)
        >>> model.set_support(support_images, support_labels)
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "matching"
    similarities = ("cosine", "euclidean")
    option_choices = {"similarity": similarities}

    def __init__(
        self,
        encoder: nn.Module,
        similarity: str = "cosine",
        fce: bool = False,
        fce_steps: int = 5,
        scale: float = 10.0,
        n_way: int = 20,
        k_shot: int = 1,
        n_query: int = 5,
        distort: bool = False,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        super().__init__(encoder, n_way, k_shot, n_query, distort, distort_until, within_alphabet)
        if similarity not in self.similarities:
            raise FewShotError(f"unknown similarity {similarity!r} for matching; valid: "
                               f"{', '.join(self.similarities)}")
        if fce_steps < 1:
            raise FewShotError(f"fce_steps must be at least 1 (the paper reads the support K times), got {fce_steps}")
        features = getattr(encoder, "out_features", None)
        if fce and features is None:
            raise FewShotError("fce needs an encoder with an out_features attribute (conv4 has one)")
        self.similarity, self.fce = similarity, fce
        self.scale = nn.Parameter(torch.tensor(float(scale))) if similarity == "cosine" else None
        self.support_context = SupportContext(features) if fce else None
        self.reader = AttentionReader(features, fce_steps) if fce else None
        self._euclidean = EuclideanDistance()

    @property
    def gallery_rule(self) -> str | None:
        """Without FCE a class's score pools its examples' attention, which a search over examples can rank;
        with FCE every stored embedding would depend on every other, so it cannot serve a gallery."""
        return None if self.fce else "pairs"

    @property
    def gallery_refusal(self) -> str:
        return "with full context embeddings (fce) each stored example's embedding depends on all the others"

    def extra_repr(self) -> str:
        return f"similarity={self.similarity!r}, fce={self.fce}"

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        episodes = super().training_batches(dataset, steps, seed)

        def shuffled(i: int) -> Episode:
            episode = episodes(i)
            order = torch.randperm(len(episode.support), generator=generator(seed, i, SHUFFLE_KEY))
            episode.support, episode.support_labels = episode.support[order], episode.support_labels[order]
            return episode

        return shuffled

    def contextual(self, support: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g(S), f(Q))``: the full context embeddings, or the plain ones without FCE."""
        if not self.fce:
            return support, query
        lead = support.shape[:-2]
        s = support.reshape(-1, *support.shape[-2:])
        q = query.reshape(-1, *query.shape[-2:])
        g = self.support_context(s)
        f = self.reader(q, g)
        return g.reshape(*lead, *g.shape[-2:]), f.reshape(*lead, *f.shape[-2:])

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        """``log p(y = k | x)``: the log of each class's share of the attention (eq. 1)."""
        g, f = self.contextual(support, query)
        with full_precision(g):
            g, f = g.float(), f.float()
            if self.similarity == "cosine":
                logits = self.scale * (F.normalize(f, dim=-1) @ F.normalize(g, dim=-1).transpose(-1, -2))
            else:
                logits = -self._euclidean.matrix(f, g)
            attention = logits.log_softmax(-1)  # [..., n_query, n_support]
            owner = F.one_hot(support_labels, n_way).T.bool()  # [n_way, n_support]
            masked = attention.unsqueeze(-2).masked_fill(~owner, float("-inf"))  # [..., q, n_way, s]
            return masked.logsumexp(-1)
