"""One evaluator: mean accuracy and 95% confidence interval over a fixed list of episodes.

Episode ``i`` of an evaluation is drawn from ``(seed, i)`` alone, so two models
evaluated with the same seed see exactly the same episodes. When a method's embedding
of an image does not depend on the episode, each test image is embedded once and all
episodes are scored from the cached embeddings, many episodes at a time.

With ``views`` > 1, each episode is also classified as a whole under the symmetries of the
square (:mod:`fewshot.data.views`: support and queries rotated, or mirrored and rotated, alike)
and the class probabilities of the views are averaged (test-time augmentation). With ``refine``
> 0, a prototype method's prototypes are first refined by the episode's queries
(:mod:`fewshot.evaluation.refinement`, Ren et al. 2018).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from fewshot.data.dataset import ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.data.views import check_views, dihedral_view
from fewshot.device import tune_cpu_allocator
from fewshot.evaluation.refinement import Refined
from fewshot.methods.base import Method, test_time_mode
from fewshot.nets.inference import fold_batch_norm

EMBED_BATCH = 1024
SCORE_BUDGET = 50_000_000  # elements of the largest intermediate per chunk of episodes


@dataclass
class EvaluationResult:
    """Accuracy over ``n_episodes`` episodes: ``mean`` and ``ci95 = 1.96 std / sqrt(n)``.

    Example:
        >>> result = evaluate(model, splits["test"], n_way=5, k_shot=1)
        >>> result.mean, result.ci95  # fractions, e.g. 0.9851 and 0.0021
    """

    n_way: int
    k_shot: int
    n_query: int
    n_episodes: int
    seed: int
    within_alphabet: bool
    mean: float
    ci95: float
    std: float
    seconds: float
    episodes_per_second: float
    transductive: bool = False
    views: int = 1
    refine: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def setting(self) -> str:
        """``"20-way 1-shot"``, with ``" within-alphabet"`` for those episodes, ``" transductive"`` for batch norm
        on each episode's statistics, ``" 8 views"`` for probabilities averaged over whole-episode views and
        ``" refined 2 steps"`` for prototypes refined by the queries (transductive too)."""
        return (f"{self.n_way}-way {self.k_shot}-shot" + (" within-alphabet" if self.within_alphabet else "")
                + (" transductive" if self.transductive else "") + (f" {self.views} views" if self.views > 1 else "")
                + (f" refined {self.refine} step{'s' * (self.refine > 1)}" if self.refine else ""))

    def __str__(self) -> str:
        return (f"{self.setting}: {100 * self.mean:.2f}% +- {100 * self.ci95:.2f} "
                f"({self.n_episodes} episodes, {self.episodes_per_second:.0f} episodes/s)")


def mean_and_ci95(accuracies: torch.Tensor) -> tuple[float, float, float]:
    """Mean, 95% confidence half-width (1.96 std / sqrt(n)) and sample std of per-episode accuracies."""
    n = accuracies.numel()
    std = accuracies.std(unbiased=True).item() if n > 1 else 0.0
    return accuracies.mean().item(), 1.96 * std / math.sqrt(n), std


def embed_dataset(method: Method, dataset: ImageDataset, device: torch.device, query: bool,
                  bf16: bool = False, view: int = 0) -> torch.Tensor:
    """Embeddings of every image of ``dataset`` (as queries or as support), in batches, under
    :func:`~fewshot.data.views.dihedral_view` ``view`` (0: as they are).

    The embedding runs on a copy of the method with batch norm folded into the convolutions
    (:func:`~fewshot.nets.inference.fold_batch_norm`). Images go in channels-last layout
    (faster convolutions on CPUs, the same numbers) and, with ``bf16``, under bfloat16 autocast.
    """
    embedder = fold_batch_norm(method).to(memory_format=torch.channels_last)
    embed = embedder.embed_query if query else embedder.embed_support
    out = []
    with test_time_mode(method), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(dataset), EMBED_BATCH):
            idx = torch.arange(start, min(start + EMBED_BATCH, len(dataset)))
            images = dihedral_view(dataset.images_at(idx).to(device), view)
            images = images.contiguous(memory_format=torch.channels_last)
            out.append(embed(images).float())
    return torch.cat(out)


class Evaluator:
    """Evaluates one method on one dataset for any number of settings, embedding each image only once.

    Example:
        >>> evaluator = Evaluator(model, splits["test"])
        >>> for n_way in (5, 20):
        ...     print(evaluator.evaluate(n_way, k_shot=1))
        >>> Evaluator(model, splits["test"], views=8).evaluate(20, 1, within_alphabet=True)
        >>> Evaluator(protonet, splits["test"], refine=1).evaluate(5, 1)  # one soft k-means step on the queries
    """

    def __init__(self, method: Method, dataset: ImageDataset, device: torch.device | str | None = None,
                 progress: bool = True, bf16: bool = False, transductive: bool = False, views: int = 1,
                 refine: int = 0) -> None:
        check_views(views)
        method = Refined(method, refine) if refine != 0 else method
        self.method, self.dataset, self.progress, self.bf16 = method, dataset, progress, bf16
        self.transductive, self.views, self.refine = transductive, views, refine
        self.device = torch.device(device) if device is not None else next(method.parameters()).device
        tune_cpu_allocator(self.device)
        self._embeddings: list[tuple[torch.Tensor, torch.Tensor]] = []

    def evaluate(self, n_way: int = 5, k_shot: int = 1, n_query: int = 15, n_episodes: int = 1000,
                 seed: int = 0, within_alphabet: bool = False) -> EvaluationResult:
        """Accuracy on ``n_episodes`` N-way K-shot episodes; episode ``i`` is drawn from ``(seed, i)``,
        with ``within_alphabet`` from one alphabet (see :class:`~fewshot.data.episodes.EpisodeSampler`).
        Runs under :func:`~fewshot.methods.base.test_time_mode`."""
        with test_time_mode(self.method):
            return self._evaluate(n_way, k_shot, n_query, n_episodes, seed, within_alphabet)

    def _evaluate(self, n_way: int, k_shot: int, n_query: int, n_episodes: int, seed: int,
                  within_alphabet: bool) -> EvaluationResult:
        sampler = EpisodeSampler(self.dataset, n_way, k_shot, n_query, n_episodes, seed,
                                 within_alphabet=within_alphabet)
        was_training = self.method.training
        self.method.eval()
        start = time.perf_counter()
        bar = tqdm(total=n_episodes, desc=f"{n_way}-way {k_shot}-shot", unit="episode", disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        accuracies = self.episode_accuracies(sampler, bar)
        bar.close()
        seconds = time.perf_counter() - start
        self.method.train(was_training)
        mean, ci95, std = mean_and_ci95(accuracies)
        return EvaluationResult(n_way, k_shot, n_query, n_episodes, seed, within_alphabet, mean, ci95, std, seconds,
                                n_episodes / max(seconds, 1e-9), self.transductive, self.views, self.refine)

    def episode_accuracies(self, sampler: EpisodeSampler, bar: tqdm) -> torch.Tensor:
        """The accuracy of each episode of ``sampler``, in order (:mod:`fewshot.evaluation.sharded` shares them out)."""
        if self.transductive:
            with batch_statistics(self.method):
                return _evaluate_per_episode(self.method, sampler, self.device, bar, self.views)
        if self.method.episode_independent:
            return self._evaluate_cached(sampler, bar)
        return _evaluate_per_episode(self.method, sampler, self.device, bar, self.views)

    def embeddings(self, view: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Support and query embeddings of every image under ``view`` (the same tensor when the method embeds
        both alike)."""
        while len(self._embeddings) <= view:
            method, v = self.method, len(self._embeddings)
            support = embed_dataset(method, self.dataset, self.device, query=False, bf16=self.bf16, view=v)
            query = support if method.shared_embedding else embed_dataset(
                method, self.dataset, self.device, query=True, bf16=self.bf16, view=v)
            self._embeddings.append((support, query))
        return self._embeddings[view]

    def _evaluate_cached(self, sampler: EpisodeSampler, bar: tqdm) -> torch.Tensor:
        embeddings = [self.embeddings(v) for v in range(self.views)]
        n, k, q = sampler.n_way, sampler.k_shot, sampler.n_query
        labels = torch.arange(n, device=self.device)
        support_labels, query_labels = labels.repeat_interleave(k), labels.repeat_interleave(q)
        per_episode = n * q * n * k * embeddings[0][0].shape[1]
        chunk = max(1, min(256, SCORE_BUDGET // per_episode))
        accuracies = []
        for first in range(0, sampler.n_episodes, chunk):
            ids = range(first, min(first + chunk, sampler.n_episodes))
            idx = torch.stack([sampler.indices(i)[0] for i in ids]).to(self.device)
            support_idx, query_idx = idx[:, :, :k].flatten(1), idx[:, :, k:].flatten(1)
            scores = view_average([self.method.scores(support_emb[support_idx], support_labels, query_emb[query_idx], n)
                                   for support_emb, query_emb in embeddings])
            accuracies.append((scores.argmax(-1) == query_labels).float().mean(-1).cpu())
            bar.update(len(ids))
        return torch.cat(accuracies)


def view_average(scores: list[torch.Tensor]) -> torch.Tensor:
    """Class scores of one or more views of an episode: a single view's as they are; for several, the log of
    their mean softmax probability."""
    if len(scores) == 1:
        return scores[0]
    return torch.stack([s.float().softmax(-1) for s in scores]).mean(0).log()


def evaluate(
    method: Method,
    dataset: ImageDataset,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    n_episodes: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    bf16: bool = False,
    within_alphabet: bool = False,
    transductive: bool = False,
    views: int = 1,
    refine: int = 0,
) -> EvaluationResult:
    """Accuracy of ``method`` on ``n_episodes`` N-way K-shot episodes of ``dataset`` (see :class:`Evaluator`).

    Example:
        >>> result = evaluate(model, splits["test"], n_way=20, k_shot=1)
        >>> print(result)  # 20-way 1-shot: 96.10% +- 0.30 (1000 episodes, ...)
        >>> evaluate(protonet, splits["test"], refine=1)  # prototypes refined by the queries (Ren et al. 2018)
    """
    return Evaluator(method, dataset, device, progress, bf16, transductive, views, refine).evaluate(
        n_way, k_shot, n_query, n_episodes, seed, within_alphabet)


@contextlib.contextmanager
def batch_statistics(method: Method) -> Iterator[None]:
    """Batch norm on the statistics of each batch instead of those learned in training (transductive testing,
    as Sung et al. 2018 and Finn et al. 2017 tested); the learned statistics are left as they were."""
    norms = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.train()
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, (training, momentum, tracked) in zip(norms, saved):
            m.train(training)
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def _evaluate_per_episode(method: Method, sampler: EpisodeSampler, device: torch.device, bar: tqdm,
                          views: int = 1) -> torch.Tensor:
    accuracies = torch.empty(sampler.n_episodes)
    for i in range(sampler.n_episodes):
        episode = sampler.episode(i).to(device)
        scores = []
        for v in range(views):
            method.set_support(dihedral_view(episode.support, v), episode.support_labels)
            scores.append(method.classify(dihedral_view(episode.query, v)))
        accuracies[i] = (view_average(scores).argmax(-1) == episode.query_labels).float().mean().item()
        bar.update(1)
    return accuracies
