"""Evaluation shared out over the processes of a ``torchrun`` launch, with the figures of one process.

Process ``r`` of ``P`` scores episodes ``r, r + P, r + 2P, ...`` of the seeded list; the per-episode
accuracies are gathered back into episode order on every process, so the mean, the 95% interval
and the standard deviation are computed from the very numbers one process computes alone.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fewshot.data.dataset import Episode, ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.distributed import Group
from fewshot.evaluation.evaluator import Evaluator
from fewshot.methods.base import Method


class EpisodeShard:
    """Episodes ``rank, rank + world_size, ...`` of ``sampler``, numbered from 0, as the evaluator reads a sampler."""

    def __init__(self, sampler: EpisodeSampler, rank: int, world_size: int) -> None:
        self.sampler = sampler
        self.ids = range(rank, sampler.n_episodes, world_size)
        self.n_way, self.k_shot, self.n_query = sampler.n_way, sampler.k_shot, sampler.n_query
        self.n_episodes = len(self.ids)

    def indices(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sampler.indices(self.ids[i])

    def episode(self, i: int) -> Episode:
        return self.sampler.episode(self.ids[i])


class ShardedEvaluator(Evaluator):
    """An :class:`~fewshot.evaluation.evaluator.Evaluator` whose episodes are shared out over ``group``.

    Every process must call :meth:`evaluate` with the same settings; each gets the full result.

    Example:
        >>> group = start_group()
        >>> result = ShardedEvaluator(model, splits["test"], group, group.use_device("cpu")).evaluate(20, 1)
    """

    def __init__(self, method: Method, dataset: ImageDataset, group: Group, device: torch.device | str | None = None,
                 progress: bool = True, bf16: bool = False, transductive: bool = False, views: int = 1,
                 refine: int = 0) -> None:
        super().__init__(method, dataset, device, progress and group.is_main, bf16, transductive, views, refine)
        self.group = group

    def episode_accuracies(self, sampler: EpisodeSampler, bar: tqdm) -> torch.Tensor:
        group = self.group
        if not group.distributed:
            return super().episode_accuracies(sampler, bar)
        share = super().episode_accuracies(EpisodeShard(sampler, group.rank, group.world_size), bar)
        width = -(-sampler.n_episodes // group.world_size)
        padded = torch.full((width,), torch.nan)
        padded[: len(share)] = share
        parts = group.gather(padded)
        accuracies = torch.empty(sampler.n_episodes)
        for rank in range(group.world_size):
            accuracies[rank::group.world_size] = parts[rank][: len(range(rank, sampler.n_episodes, group.world_size))]
        return accuracies
