"""Meta-learning by optimisation: MAML (Finn et al. 2017) and its relatives, as options of one method.

MAML learns initial weights ``theta`` from which a few gradient steps on an episode's support set give a good
classifier of its queries. The inner loop (eq. 1) adapts a copy of the weights to each episode (task ``i``)::

    theta'_i = theta - alpha grad_theta L_support_i(f_theta)                        (eq. 1, repeated per step)

and the meta-objective (eq. 2) is the query loss of the adapted weights, summed over a meta-batch of tasks,
which the meta-optimiser (the trainer's Adam, eq. 3) minimises. The meta-gradient goes through the inner
gradient (second order: Hessian-vector products); ``first_order`` takes the inner gradients as constants
(FOMAML, section 5.2), so that ``d L_query / d theta = d L_query / d theta'``.

Options of the same method:

- ``adapt="head"``: ANIL (Raghu et al. 2020, section 4): the inner loop adapts the linear head only; the
  body's features are computed once per episode.
- ``learn_inner_lr="per-parameter"``: Meta-SGD (Li et al. 2017, eq. 3): ``theta' = theta - alpha o grad``,
  ``alpha`` a learned tensor of the shape of ``theta``, which sets each coordinate's rate and direction.
- ``learn_inner_lr="per-layer-per-step"``: MAML++'s LSLR (Antoniou et al. 2019, section 4): one learned rate
  per parameter tensor and inner step.
- ``multi_step_loss``: MAML++'s MSL: the query loss after every inner step, weighted, the weights annealed
  from uniform towards the last step. MAML++'s cosine annealing of the meta learning rate is the trainer's
  ``lr_schedule: cosine``.

Batch norm: Finn et al. normalise with each batch's statistics, the queries on their own (transductive).
Here the queries are normalised with the statistics of the support set (:mod:`fewshot.nets.support_norm`),
in training and at test time, so a query's scores depend on the support set alone; the saved running
statistics are never used or changed. ``fewshot evaluate --transductive-batch-norm`` tests the paper's way
(queries on their own batch statistics) and labels the figures so; ``transductive`` trains that way.

The meta-batch: the trainer's ``episodes_per_step`` averages the losses of that many episodes before each
meta-update, the arithmetic of eq. 3 (with the mean for the sum, a constant factor). With ``vmap_tasks`` T,
each training batch holds T episodes whose losses are taken together by ``torch.func.vmap``; batch ``b`` holds
episodes ``b T .. b T + T - 1``, so ``vmap_tasks`` 32 draws the same episodes as ``episodes_per_step`` 32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.methods.base import BatchSource, accuracy, check_positive_integers
from fewshot.methods.episodic import EpisodicMethod
from fewshot.methods.registry import METHODS
from fewshot.nets.support_norm import batch_norms, support_statistics

ADAPT = ("all", "head")
LEARN_INNER_LR = ("none", "per-layer-per-step", "per-parameter")
MSL_FLOOR = 0.03  # MAML++'s code: the weight of a step other than the last anneals down to 0.03 / steps


@dataclass
class Tasks:
    """``T`` episodes stacked for ``torch.func.vmap``, and the number of the first (the clock of the annealing
    of ``multi_step_loss``).

    Example:
        >>> batch = MAML(encoder, vmap_tasks=32).training_batches(train_set, steps=1000, seed=0)(5)
        >>> batch.support.shape, batch.first  # episodes 160 .. 191
        (torch.Size([32, 5, 1, 28, 28]), 160)
    """

    support: torch.Tensor  # [T, n_support, c, h, w]
    support_labels: torch.Tensor  # [n_support], the same in every episode
    query: torch.Tensor  # [T, n_query, c, h, w]
    query_labels: torch.Tensor  # [n_query]
    first: int

    @property
    def n_way(self) -> int:
        return int(self.support_labels.max()) + 1

    def to(self, device: torch.device | str) -> Tasks:
        return Tasks(self.support.to(device), self.support_labels.to(device), self.query.to(device),
                     self.query_labels.to(device), self.first)


def step_weights(steps: int, progress: float) -> list[float]:
    """MAML++'s weights of the query losses after each of ``steps`` inner steps (Antoniou et al. 2019, section 4,
    and their code): ``1 / steps`` each at ``progress`` 0; linearly, the last grows and the others shrink to
    ``0.03 / steps`` at ``progress`` 1. They sum to 1.

    Example:
        >>> step_weights(4, 0.5)
        [0.125, 0.125, 0.125, 0.625]
    """
    floor = MSL_FLOOR / steps
    others = max(1 / steps - progress / steps, floor)
    last = min(1 / steps + progress * (steps - 1) / steps, 1 - (steps - 1) * floor)
    return [others] * (steps - 1) + [last]


@METHODS.register("maml")
class MAML(EpisodicMethod):
    """MAML: initial weights from which a few gradient steps on the support set classify the queries.

    The learner is ``encoder`` (the paper's Omniglot network is ``conv4_strided``) and a linear layer to
    ``n_way`` classes. The training episodes' options (``n_way``, ``k_shot``, ``n_query``, ``distort``,
    ``distort_until``, ``within_alphabet``) are those of :class:`~fewshot.methods.episodic.EpisodicMethod`;
    test episodes must have ``n_way`` classes too, the size of the learner's output layer.

    Args:
        encoder: the learner's body, with an ``out_features`` attribute.
        inner_steps: gradient steps on the support set per episode in training (the paper: 1 at 5-way, 5 at 20-way).
        inner_lr: the inner step size alpha (the paper: 0.4 at 5-way, 0.1 at 20-way), and the initial value of
            learned rates.
        test_inner_steps: the steps at test time (default: inner_steps; the paper: 3 at 5-way, 5 at 20-way).
        first_order: take the inner gradients as constants (FOMAML): no second derivatives.
        adapt: the weights the inner loop adapts: ``all``, or ``head`` (ANIL, Raghu et al. 2020).
        learn_inner_lr: ``none`` (the fixed inner_lr), ``per-layer-per-step`` (MAML++'s LSLR: a learned rate
            per parameter tensor and step) or ``per-parameter`` (Meta-SGD: a learned rate per weight).
        multi_step_loss: MAML++'s MSL: the meta-loss weighs the query loss after every inner step, the weights
            annealed towards the last step over msl_anneal_episodes training episodes.
        msl_anneal_episodes: training episodes over which multi_step_loss's weights anneal.
        transductive: in training, normalise the queries with their own batch statistics, as Finn et al. did
            (default: with the support set's); validate such a model with ``val_transductive`` and test it with
            ``evaluate --transductive-batch-norm``.
        vmap_tasks: episodes per training batch, their losses taken together by torch.func.vmap; the meta-batch
            is vmap_tasks x the trainer's episodes_per_step (1: no vmap, the trainer's loop makes it).

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = MAML(build_encoder("conv4_strided", 1, 28), n_way=5, inner_steps=1, inner_lr=0.4)
        >>> model.set_support(support_images, support_labels)  # gradient steps on a copy of the weights
        >>> predictions = model.classify(query_images).argmax(-1)
    """

    name = "maml"
    episode_independent = False
    adapts_at_test_time = True
    embeds_images = False
    default_encoder = "conv4_strided"
    gallery_refusal = ("it classifies with weights adapted by gradient steps on each episode's support set, so a "
                       "query's score depends on the whole support set, not on a comparison with each stored example")

    def __init__(
        self,
        encoder: nn.Module,
        inner_steps: int = 1,
        inner_lr: float = 0.4,
        test_inner_steps: int | None = None,
        first_order: bool = False,
        adapt: str = "all",
        learn_inner_lr: str = "none",
        multi_step_loss: bool = False,
        msl_anneal_episodes: int = 40_000,
        transductive: bool = False,
        vmap_tasks: int = 1,
        n_way: int = 5,
        k_shot: int = 1,
        n_query: int = 1,
        distort: bool = False,
        distort_until: int | None = None,
        within_alphabet: bool = False,
    ) -> None:
        super().__init__(encoder, n_way, k_shot, n_query, distort, distort_until, within_alphabet)
        test_inner_steps = inner_steps if test_inner_steps is None else test_inner_steps
        check_positive_integers("maml", inner_steps=inner_steps, msl_anneal_episodes=msl_anneal_episodes,
                                vmap_tasks=vmap_tasks, n_way=n_way)
        if isinstance(inner_lr, bool) or not isinstance(inner_lr, (int, float)) or inner_lr <= 0:
            raise FewShotError(f"maml option inner_lr must be a positive number (the paper: 0.4 at 5-way, 0.1 at "
                               f"20-way), got {inner_lr!r}")
        if adapt not in ADAPT:
            raise FewShotError(f"maml option adapt must be all (MAML) or head (ANIL), got {adapt!r}")
        if learn_inner_lr not in LEARN_INNER_LR:
            raise FewShotError(f"maml option learn_inner_lr must be none, per-layer-per-step (MAML++) or "
                               f"per-parameter (Meta-SGD), got {learn_inner_lr!r}")
        if multi_step_loss and inner_steps == 1:
            raise FewShotError("multi_step_loss weighs the query loss after each inner step, and with inner_steps 1 "
                               "there is one: pass inner_steps > 1 (--inner-steps), or leave multi_step_loss off")
        features = getattr(encoder, "out_features", None)
        if not isinstance(features, int):
            raise FewShotError("maml needs an encoder with an out_features attribute, the input size of the learner's "
                               "output layer: use --encoder conv4_strided (the paper's) or conv4")
        self.inner_steps, self.inner_lr = inner_steps, float(inner_lr)
        self.first_order, self.adapt, self.learn_inner_lr = first_order, adapt, learn_inner_lr
        self.set_test_inner_steps(test_inner_steps)
        self.multi_step_loss, self.msl_anneal_episodes = multi_step_loss, msl_anneal_episodes
        self.transductive, self.vmap_tasks = transductive, vmap_tasks
        self.head = nn.Linear(features, n_way)
        adapted = self.head if adapt == "head" else self
        prefix = "head." if adapt == "head" else ""
        self._adapted_names = [prefix + n for n, _ in adapted.named_parameters()]
        if learn_inner_lr == "none":
            self.inner_rates = None
        else:
            shapes = [self.get_parameter(n).shape if learn_inner_lr == "per-parameter" else (inner_steps,)
                      for n in self._adapted_names]
            self.inner_rates = nn.ParameterList([nn.Parameter(torch.full(s, self.inner_lr)) for s in shapes])
        self._norms = batch_norms(encoder)
        self._adapted: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None

    def set_test_inner_steps(self, steps: int) -> None:
        """Take ``steps`` inner steps on each support set at test time (``fewshot evaluate --test-inner-steps``)."""
        check_positive_integers("maml", test_inner_steps=steps)
        if self.learn_inner_lr == "per-layer-per-step" and steps > self.inner_steps:
            raise FewShotError(f"per-layer-per-step learns a rate for each of the {self.inner_steps} training steps and "
                               f"has none for step {self.inner_steps + 1}: pass test_inner_steps <= {self.inner_steps} "
                               f"(--test-inner-steps), or learn_inner_lr per-parameter")
        self.test_inner_steps = steps

    def extra_repr(self) -> str:
        return (f"inner_steps={self.inner_steps}, inner_lr={self.inner_lr}, test_inner_steps={self.test_inner_steps}, "
                f"first_order={self.first_order}, adapt={self.adapt}, learn_inner_lr={self.learn_inner_lr}, "
                f"multi_step_loss={self.multi_step_loss}, transductive={self.transductive}, "
                f"vmap_tasks={self.vmap_tasks}")

    def check_compile(self) -> None:
        """Refuse ``compile: true``: the inner loop takes gradients inside the training loss."""
        raise FewShotError("maml takes gradients (torch.func.grad) inside its training loss, in the inner loop, which "
                           "torch.compile cannot trace as one graph; leave compile off (--no-compile)")

    # -- the learner -------------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The learner's class scores ``[b, n_way]`` with the weights ``theta`` (no adaptation)."""
        return self.head(self.encoder(images))

    def rate(self, index: int, step: int) -> torch.Tensor | float:
        """The inner step size of the ``index``-th adapted tensor at inner step ``step``."""
        if self.inner_rates is None:
            return self.inner_lr
        rates = self.inner_rates[index]
        return rates if self.learn_inner_lr == "per-parameter" else rates[step]

    def _query_on_own_statistics(self) -> bool:
        """Whether queries are normalised with their own batch statistics: in training with ``transductive``; in
        eval mode when the evaluator asks (``--transductive-batch-norm`` puts the batch norms in training mode)."""
        if self.training:
            return self.transductive
        return any(norm.training for norm in self._norms)

    def episode_inputs(self, support: torch.Tensor,
                       query: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the adapted weights take: the images, or with ``adapt="head"`` the body's features on ``theta``
        (computed once per episode: the body does not change)."""
        if self.adapt == "all":
            return support, query
        if query is None or self._query_on_own_statistics():
            with support_statistics(self.encoder, None):
                return self.encoder(support), None if query is None else self.encoder(query)
        with support_statistics(self.encoder, len(support)):
            features = self.encoder(torch.cat([support, query]))
        return features[: len(support)], features[len(support):]

    def learner_scores(self, params: dict[str, torch.Tensor], support: torch.Tensor,
                       query: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class scores of the support (and query) inputs with the adapted weights ``params`` (by name); the
        queries on the support's batch-norm statistics unless :meth:`_query_on_own_statistics`."""
        if self.adapt == "head":
            head = {name.removeprefix("head."): value for name, value in params.items()}
            inputs = support if query is None else torch.cat([support, query])
            scores = functional_call(self.head, head, (inputs,))
        elif query is None or self._query_on_own_statistics():
            with support_statistics(self.encoder, None):
                scores = functional_call(self, params, (support,))
                if query is not None:
                    scores = torch.cat([scores, functional_call(self, params, (query,))])
        else:
            with support_statistics(self.encoder, len(support)):
                scores = functional_call(self, params, (torch.cat([support, query]),))
        return scores[: len(support)], None if query is None else scores[len(support):]

    # -- the inner loop ----------------------------------------------------------------------------

    def inner_loop(self, support: torch.Tensor, support_labels: torch.Tensor, steps: int,
                   query: torch.Tensor | None = None,
                   every_step: bool = False) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """``steps`` gradient steps from ``theta`` on the support loss (eq. 1), on episode inputs
        (:meth:`episode_inputs`).

        Returns the adapted weights by name, the scores of ``query`` after each step (``every_step``; else after
        the last only; none without ``query``) and the support loss before the first step. Gradients are taken
        by ``torch.func.grad``, so the loop runs under ``torch.no_grad`` and inside ``torch.func.vmap``; they stay
        in the autograd graph of the meta-gradient unless ``first_order``.
        """
        params = {name: self.get_parameter(name) for name in self._adapted_names}

        def support_loss(p: dict[str, torch.Tensor], with_query: bool):
            support_scores, query_scores = self.learner_scores(p, support, query if with_query else None)
            return F.cross_entropy(support_scores, support_labels), () if query_scores is None else (query_scores,)

        query_scores, first_loss = [], None
        for step in range(steps):
            with_query = every_step and step > 0  # the queries after the previous step, in the same forward pass
            grads, (loss, scores) = grad_and_value(support_loss, has_aux=True)(params, with_query)
            query_scores.extend(scores)
            if first_loss is None:
                first_loss = loss.detach()
            params = {name: value - self.rate(i, step) * (grads[name].detach() if self.first_order else grads[name])
                      for i, (name, value) in enumerate(params.items())}
        if query is not None:
            query_scores.append(self.learner_scores(params, support, query)[1])
        return params, query_scores, first_loss

    def episode_loss(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                     query_labels: torch.Tensor, weights: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The meta-loss of one episode (the query loss after the inner loop, or MSL's weighted sum with
        ``weights``), the query accuracy after the inner loop and the support loss before it."""
        support, query = self.episode_inputs(support, query)
        _, scores, support_loss = self.inner_loop(support, support_labels, self.inner_steps, query,
                                                  every_step=weights is not None)
        losses = torch.stack([F.cross_entropy(s, query_labels) for s in scores])
        loss = losses[-1] if weights is None else (weights * losses).sum()
        return loss, accuracy(scores[-1], query_labels), support_loss

    # -- training ----------------------------------------------------------------------------------

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        episode = super().training_batches(dataset, steps * self.vmap_tasks, seed)

        def tasks(b: int) -> Tasks:
            episodes = [episode(b * self.vmap_tasks + t) for t in range(self.vmap_tasks)]
            return Tasks(torch.stack([e.support for e in episodes]), episodes[0].support_labels,
                         torch.stack([e.query for e in episodes]), episodes[0].query_labels, b * self.vmap_tasks)

        return tasks

    def training_loss(self, batch: Tasks) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean meta-loss of the batch's episodes (eq. 2), under ``torch.func.vmap`` when there are several;
        metrics: query accuracy after adaptation, support loss before it, and the mean learned inner rate."""
        self.check_learner_ways(batch.n_way)
        weights = None
        if self.multi_step_loss:  # each episode's weights by its own number, as if the trainer drew it alone
            progress = [min(1.0, (batch.first + t) / self.msl_anneal_episodes) for t in range(len(batch.support))]
            weights = torch.tensor([step_weights(self.inner_steps, p) for p in progress], device=batch.query.device)
        if len(batch.support) == 1:
            losses = [x.unsqueeze(0) for x in self.episode_loss(
                batch.support[0], batch.support_labels, batch.query[0], batch.query_labels,
                None if weights is None else weights[0])]
        else:
            losses = vmap(self.episode_loss, in_dims=(0, None, 0, None, None if weights is None else 0))(
                batch.support, batch.support_labels, batch.query, batch.query_labels, weights)
        loss, correct, support_loss = (x.mean() for x in losses)
        metrics = {"accuracy": correct.detach(), "support_loss": support_loss.detach()}
        if self.inner_rates is not None:
            metrics["inner_lr"] = torch.cat([r.detach().reshape(-1) for r in self.inner_rates]).mean()
        return loss, metrics

    # -- test time ---------------------------------------------------------------------------------

    def scores(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
               n_way: int) -> torch.Tensor:
        """Class scores ``[n_query, n_way]`` of query *images* after ``test_inner_steps`` steps on the support
        images (images, not embeddings: the learner changes with each episode)."""
        self.check_learner_ways(n_way)
        support_in, query_in = self.episode_inputs(support, query)
        return self.inner_loop(support_in, support_labels, self.test_inner_steps, query_in)[1][-1]

    def set_support(self, support: torch.Tensor, support_labels: torch.Tensor) -> None:
        """Adapt a copy of the weights to the support set (``test_inner_steps`` steps); the saved weights never
        change. Works under ``torch.no_grad`` and ``torch.inference_mode``."""
        self.check_learner_ways(int(support_labels.max()) + 1)
        with torch.inference_mode(False), torch.no_grad():
            if support.is_inference():
                support, support_labels = support.clone(), support_labels.clone()
            support_in, _ = self.episode_inputs(support)
            params, _, _ = self.inner_loop(support_in, support_labels, self.test_inner_steps)
        self._adapted = (params, support)

    def classify(self, query: torch.Tensor) -> torch.Tensor:
        """Scores ``[n_query, n_way]`` of query images by the weights adapted to the support set given last."""
        if self._adapted is None:
            raise RuntimeError("call set_support(support, support_labels) before classify(query)")
        params, support = self._adapted
        support_in, query_in = self.episode_inputs(support, query)
        return self.learner_scores(params, support_in, query_in)[1]
