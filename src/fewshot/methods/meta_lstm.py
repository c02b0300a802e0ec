"""Meta-LSTM (Ravi and Larochelle 2017, "Optimization as a Model for Few-Shot Learning").

A *learner* (a small CNN classifier with an ``n_way`` output layer) is trained on each episode's
support set by a *meta-learner*, an LSTM whose cell state is the learner's parameters. Gradient
descent ``theta_t = theta_{t-1} - alpha_t grad_t`` is the LSTM cell update
``c_t = f_t * c_{t-1} + i_t * c~_t`` with ``c~_t = -grad_t`` (section 3.1, eq. 2), so the meta-learner
learns the step size (the input gate ``i_t``), a shrinkage of the parameters (the forget gate ``f_t``)
and the initial parameters ``c_0``::

    c_t = f_t * c_{t-1} - i_t * grad_t                                   (eq. 2)
    i_t = sigmoid(W_I . [h_t, theta_{t-1}, i_{t-1}] + b_I)               (eq. 3)
    f_t = sigmoid(W_F . [h_t, theta_{t-1}, f_{t-1}] + b_F)               (eq. 4)

The meta-learner is coordinate-wise (section 3.2): one set of weights for every learner parameter,
each coordinate with its own state. It is two layers: the first a plain LSTM (20 units) reading, per
coordinate, the preprocessed gradient and loss (Andrychowicz et al. 2016, appendix A:
``x -> (log|x| / p, sign x)`` if ``|x| >= e^-p``, else ``(-1, e^p x)``, with ``p = 10``); its hidden
state ``h_t`` stands for the gradient and loss in eqs. 3-4 of the second layer, whose cell state is the
learner's parameters. The gates' previous values ``i_0``, ``f_0`` are zero, as in the authors' code.

Training (section 3.3, Algorithm 1): on each episode, the learner starts from ``c_0`` and takes ``T``
updates on the whole support set (``D_train``: "we consider training sets with only a total of 5 or
25 examples"); the loss of the updated learner on the queries (``D_test``) is the meta-learner's loss,
taken through all ``T`` updates. The gradient of the learner's loss given to the meta-learner is a
constant of that graph: "we ignore second derivatives" (the gradient dependence assumption), so the
meta-gradient needs no Hessian-vector products.

Batch normalization (section 3.4): in every update of the learner, batch norm uses the support's
batch statistics and also keeps running averages of them, which start afresh on each episode (the
authors reset the learner per episode) with the momentum of the authors' code (0.9 at 1 shot, 0.95 at
5 shots). In meta-training the queries are normalised with their own batch statistics, as the paper
does; in meta-testing (eval mode) with the running averages of the episode's support, so a query's
scores depend on the support set alone and never on the other queries: the evaluation is not
transductive, and nothing of a test episode is stored. The batch-norm buffers of the saved weights are
never used or changed (``fewshot evaluate --transductive-batch-norm`` normalises the queries with
their batch statistics instead, and labels the results so).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fewshot.data.dataset import Episode
from fewshot.errors import FewShotError
from fewshot.methods.base import accuracy, check_positive_integers
from fewshot.methods.episodic import EpisodicMethod
from fewshot.methods.registry import METHODS

PREPROCESS_P = 10.0  # p of the gradient preprocessing (Andrychowicz et al. 2016, appendix A)
INIT_RANGE = 0.01  # the meta-learner's weights start uniform in [-0.01, 0.01] (the authors' code)
FORGET_BIAS = (4.0, 5.0)  # b_F uniform in this range: f_t starts near 1 (section 3.3; the authors' code)
INPUT_BIAS = (-5.0, -4.0)  # b_I uniform in this range: i_t starts near 0.01, a small learning rate


def preprocess(x: torch.Tensor, p: float = PREPROCESS_P) -> torch.Tensor:
    """``[...] -> [..., 2]``: ``(log|x| / p, sign x)`` where ``|x| >= e^-p``, else ``(-1, e^p x)``.

    The preprocessing of Andrychowicz et al. (2016, appendix A) that Ravi and Larochelle apply to the
    learner's gradient and loss (section 3.2): each input is split into its magnitude on a log scale and
    its sign, so that inputs of very different scales reach the LSTM on one scale.
    """
    large = x.abs() >= math.exp(-p)
    magnitude = torch.where(large, x.abs().clamp_min(math.exp(-p)).log() / p, -1.0)
    sign = torch.where(large, x.sign(), math.exp(p) * x)
    return torch.stack([magnitude, sign], dim=-1)


@dataclass
class UpdaterState:
    """The meta-learner's recurrent state over one episode, one row per learner parameter."""

    hidden: torch.Tensor  # h of the first layer [n_params, hidden_size]
    cell: torch.Tensor  # c of the first layer [n_params, hidden_size]
    forget: torch.Tensor  # f_{t-1} [n_params]
    input: torch.Tensor  # i_{t-1} [n_params]


class MetaLearnerLSTM(nn.Module):
    """The two-layer coordinate-wise meta-learner: an LSTM over the preprocessed gradient and loss, and
    the update of eq. 2 with the gates of eqs. 3-4 (section 3.2).

    Example:
        >>> meta = MetaLearnerLSTM(hidden_size=20)
        >>> state = meta.initial_state(theta)
        >>> theta, state = meta(grad, loss, theta, state)  # one update of the learner's parameters
    """

    def __init__(self, hidden_size: int = 20) -> None:
        super().__init__()
        self.lstm = nn.LSTMCell(4, hidden_size)
        self.forget_gate = nn.Linear(hidden_size + 2, 1)  # W_F, b_F
        self.input_gate = nn.Linear(hidden_size + 2, 1)  # W_I, b_I
        with torch.no_grad():
            for weight in self.parameters():
                weight.uniform_(-INIT_RANGE, INIT_RANGE)
            self.forget_gate.bias.uniform_(*FORGET_BIAS)
            self.input_gate.bias.uniform_(*INPUT_BIAS)

    def initial_state(self, theta: torch.Tensor) -> UpdaterState:
        """The state before an episode's first update: zero LSTM state and zero previous gates."""
        n = theta.shape[0]
        zeros = theta.new_zeros(n, self.lstm.hidden_size)
        return UpdaterState(zeros, zeros, theta.new_zeros(n), theta.new_zeros(n))

    def forward(self, grad: torch.Tensor, loss: torch.Tensor, theta: torch.Tensor,
                state: UpdaterState) -> tuple[torch.Tensor, UpdaterState]:
        """One update: ``theta [n]`` (``c_{t-1}``), its gradient ``grad [n]`` and the 0-d loss ->
        ``(c_t, state)``, with ``c_t = f_t * c_{t-1} - i_t * grad`` (eq. 2)."""
        n = theta.shape[0]
        x = torch.cat([preprocess(grad), preprocess(loss).expand(n, 2)], dim=1)
        hidden, cell = self.lstm(x, (state.hidden, state.cell))
        column = theta.unsqueeze(1)
        forget = torch.sigmoid(self.forget_gate(torch.cat([hidden, column, state.forget.unsqueeze(1)], 1))).squeeze(1)
        rate = torch.sigmoid(self.input_gate(torch.cat([hidden, column, state.input.unsqueeze(1)], 1))).squeeze(1)
        return forget * theta - rate * grad, UpdaterState(hidden, cell, forget, rate)


@dataclass
class Adapted:
    """The learner after the meta-learner's updates on one support set."""

    params: dict[str, torch.Tensor]  # c_T, by parameter name
    statistics: dict[str, torch.Tensor]  # the episode's batch-norm running averages, by buffer name
    state: UpdaterState  # the meta-learner's state after the last update (its gates)
    support_loss: torch.Tensor  # the learner's loss on the support before the last update


@METHODS.register("meta_lstm")
class MetaLSTM(EpisodicMethod):
    """Meta-LSTM: an LSTM meta-learner trains a CNN learner on each episode's support set.

    The learner is ``encoder`` (the paper's: 4 blocks of a 3x3 convolution with 32 filters, batch norm,
    ReLU and 2x2 max-pooling; ``conv4`` with ``hidden: 32``) and a linear layer to ``n_way`` classes;
    its parameters before any update, ``c_0``, are the method's own ``encoder`` and ``head`` weights.
    The training episodes' options (``n_way``, ``k_shot``, ``n_query``, ``distort``, ``distort_until``,
    ``within_alphabet``) are those of :class:`~fewshot.methods.episodic.EpisodicMethod`; test episodes
    must have ``n_way`` classes too, the size of the learner's output layer.

    Args:
        encoder: the learner's convolutional body, with an ``out_features`` attribute.
        inner_steps: T, the learner's updates on the support set per episode in meta-training (the
            authors' code: 12 at 1 shot, 8 at 5 shots).
        test_inner_steps: the updates at test time (default: inner_steps, as the authors test).
        hidden_size: units of the meta-learner's first LSTM layer (the paper's 20).
        bn_momentum: weight of each update's support batch statistics in the episode's running averages,
            which normalise the queries at test time (the authors' code: 0.9 at 1 shot, 0.95 at 5 shots).

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = MetaLSTM(build_encoder("conv4", 1, 28, hidden=32), n_way=5, k_shot=1)
        >>> model.set_support(support_images, support_labels)  # 12 updates of a copy of the learner
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "meta_lstm"
    episode_independent = False
    adapts_at_test_time = True
    embeds_images = False
    gallery_refusal = ("it classifies with a learner trained on each episode's support set, so a query's score "
                       "depends on the whole support set, not on a comparison with each stored example")

    def __init__(
        self,
        encoder: nn.Module,
        inner_steps: int = 12,
        test_inner_steps: int | None = None,
        hidden_size: int = 20,
        bn_momentum: float = 0.9,
        n_way: int = 5,
        k_shot: int = 1,
        n_query: int = 15,
        distort: bool = False,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        super().__init__(encoder, n_way, k_shot, n_query, distort, distort_until, within_alphabet)
        check_positive_integers("meta_lstm", inner_steps=inner_steps, hidden_size=hidden_size, n_way=n_way)
        if isinstance(bn_momentum, bool) or not 0 < bn_momentum <= 1:
            raise FewShotError(f"meta_lstm option bn_momentum must be in (0, 1] (the authors' code: 0.9 at 1 shot, "
                               f"0.95 at 5 shots), got {bn_momentum!r}")
        features = getattr(encoder, "out_features", None)
        if not isinstance(features, int):
            raise FewShotError("meta_lstm needs an encoder with an out_features attribute, the input size of the "
                               "learner's output layer: use --encoder conv4")
        self.inner_steps, self.hidden_size, self.bn_momentum = inner_steps, hidden_size, bn_momentum
        self.set_test_inner_steps(inner_steps if test_inner_steps is None else test_inner_steps)
        self.head = nn.Linear(features, n_way)
        self.meta_learner = MetaLearnerLSTM(hidden_size)
        self._norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for norm in self._norms:
            norm.momentum = bn_momentum
        prefix = {id(m): name for name, m in self.named_modules()}
        self._statistics = [(prefix[id(m)], m) for m in self._norms if m.track_running_stats]
        learner = [(f"encoder.{n}", p) for n, p in encoder.named_parameters()]
        learner += [(f"head.{n}", p) for n, p in self.head.named_parameters()]
        self._learner_names = [n for n, _ in learner]
        self._learner_shapes = [p.shape for _, p in learner]
        self._adapted: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None

    def set_test_inner_steps(self, steps: int) -> None:
        """Update the learner ``steps`` times on each support set at test time (``fewshot evaluate
        --test-inner-steps``)."""
        check_positive_integers("meta_lstm", test_inner_steps=steps)
        self.test_inner_steps = steps

    def extra_repr(self) -> str:
        return (f"inner_steps={self.inner_steps}, test_inner_steps={self.test_inner_steps}, "
                f"hidden_size={self.hidden_size}, bn_momentum={self.bn_momentum}")

    def check_compile(self) -> None:
        """Refuse ``compile: true``: every update takes the learner's gradient inside the loss."""
        raise FewShotError("meta_lstm takes the learner's gradient (torch.autograd.grad) inside its training loss at "
                           "every update, which torch.compile cannot trace as one graph; leave compile off "
                           "(--no-compile)")

    # -- the learner -------------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The learner's class scores ``[b, n_way]`` with its initial parameters ``c_0``."""
        return self.head(self.encoder(images))

    def learner(self, params: dict[str, torch.Tensor], statistics: dict[str, torch.Tensor],
                images: torch.Tensor) -> torch.Tensor:
        """The learner's class scores with parameters ``params`` and batch-norm buffers ``statistics`` (by name)."""
        return functional_call(self, {**params, **statistics}, (images,))

    def initial_parameters(self) -> torch.Tensor:
        """``c_0``: the learner's parameters, flattened in one vector (the meta-learner's initial cell state)."""
        return torch.cat([p.reshape(-1) for p in (self.get_parameter(n) for n in self._learner_names)])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat parameter vector as the learner's parameters, by name."""
        sizes = [shape.numel() for shape in self._learner_shapes]
        return {name: chunk.view(shape) for name, chunk, shape in
                zip(self._learner_names, theta.split(sizes), self._learner_shapes)}

    def fresh_statistics(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch-norm buffers for a new episode: zero means, unit variances, no batches counted."""
        statistics = {}
        for name, norm in self._statistics:
            statistics[f"{name}.running_mean"] = like.new_zeros(norm.num_features)
            statistics[f"{name}.running_var"] = like.new_ones(norm.num_features)
            statistics[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long, device=like.device)
        return statistics

    # -- the meta-learner's updates ----------------------------------------------------------------

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor, steps: int) -> Adapted:
        """``steps`` updates of the learner from ``c_0`` on the whole support set (Algorithm 1, lines 5-11).

        Each update's gradient and loss are computed on a detached copy of the parameters (the gradient
        dependence assumption: "we ignore second derivatives"); the updates themselves stay in the
        autograd graph when gradients are enabled, so the query loss reaches the meta-learner and ``c_0``.
        Batch norm runs on the support's batch statistics and updates fresh running averages.
        """
        check_positive_integers("meta_lstm", steps=steps)
        theta = self.initial_parameters()
        statistics = self.fresh_statistics(theta)
        state = self.meta_learner.initial_state(theta)
        modes = [norm.training for norm in self._norms]
        for norm in self._norms:
            norm.train()
        try:
            for _ in range(steps):
                with torch.enable_grad():
                    leaf = theta.detach().requires_grad_()
                    loss = F.cross_entropy(self.learner(self.unflatten(leaf), statistics, support), support_labels)
                    (grad,) = torch.autograd.grad(loss, leaf)
                theta, state = self.meta_learner(grad, loss.detach(), theta, state)
        finally:
            for norm, mode in zip(self._norms, modes):
                norm.train(mode)
        return Adapted(self.unflatten(theta), statistics, state, loss.detach())

    def training_loss(self, batch: Episode) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The cross-entropy of the updated learner on the queries (Algorithm 1, lines 12-13), with the mean
        gates of the last update and the support loss before it as metrics."""
        self.check_learner_ways(batch.n_way)
        adapted = self.adapt(batch.support, batch.support_labels, self.inner_steps)
        scores = self.learner(adapted.params, adapted.statistics, batch.query)
        metrics = {"accuracy": accuracy(scores, batch.query_labels), "support_loss": adapted.support_loss,
                   "input_gate": adapted.state.input.detach().mean(), "forget_gate": adapted.state.forget.detach().mean()}
        return F.cross_entropy(scores, batch.query_labels), metrics

    # -- test time ---------------------------------------------------------------------------------

    def scores(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
               n_way: int) -> torch.Tensor:
        """Class scores ``[n_query, n_way]`` of query *images* after the learner's updates on the support images
        ``[n_support, c, h, w]`` (images, not embeddings: the learner's features change with each episode)."""
        self.check_learner_ways(n_way)
        adapted = self.adapt(support, support_labels, self.test_inner_steps)
        return self.learner(adapted.params, adapted.statistics, query)

    def set_support(self, support: torch.Tensor, support_labels: torch.Tensor) -> None:
        """Train a copy of the learner on the support set (``test_inner_steps`` updates); the saved weights,
        batch-norm buffers included, never change. Works under ``torch.no_grad`` and ``torch.inference_mode``."""
        self.check_learner_ways(int(support_labels.max()) + 1)
        with torch.inference_mode(False), torch.no_grad():
            if support.is_inference():
                support, support_labels = support.clone(), support_labels.clone()
            adapted = self.adapt(support, support_labels, self.test_inner_steps)
        self._adapted = (adapted.params, adapted.statistics)

    def classify(self, query: torch.Tensor) -> torch.Tensor:
        """Scores ``[n_query, n_way]`` of query images by the learner trained on the support set given last."""
        if self._adapted is None:
            raise RuntimeError("call set_support(support, support_labels) before classify(query)")
        return self.learner(*self._adapted, query)
