"""The intervals the evaluators report, against slow reference paths on the same episodes: ``evaluate()``'s
``ci95`` and the MANN's per-instance ``ci95`` are 1.96 std / sqrt(n) of per-episode accuracies."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic import make_dataset

from fewshot.data.episodes import EpisodeSampler
from fewshot.evaluation.evaluator import evaluate
from fewshot.evaluation.instances import evaluate_instances
from fewshot.methods.mann import MANN
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.nets import build_encoder
from fewshot.nets.flatten import FlattenEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = make_dataset(n_classes=10, per_class=8, size=16, seed=3, noise=0.6)


def interval(accuracies: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width of per-episode accuracies, in float64 with numpy."""
    values = np.asarray(accuracies, dtype=np.float64)
    return float(values.mean()), 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values))


@torch.inference_mode()
def protonet_accuracy_by_hand(model: PrototypicalNetworks, sampler: EpisodeSampler, i: int) -> float:
    """Episode ``i`` scored query by query: nearest class mean in squared Euclidean distance (float64)."""
    episode = sampler.episode(i)
    support = model.encoder(episode.support).double()
    query = model.encoder(episode.query).double()
    prototypes = [support[episode.support_labels == c].mean(0) for c in range(sampler.n_way)]
    correct = 0
    for x, y in zip(query, episode.query_labels.tolist()):
        distances = [float(((x - p) ** 2).sum()) for p in prototypes]
        correct += distances.index(min(distances)) == y
    return correct / len(query)


@pytest.mark.parametrize("n_way,k_shot,n_query,n_episodes", [(5, 1, 3, 40), (3, 2, 4, 25)])
def test_evaluate_ci95_is_1_96_std_over_sqrt_n_of_episode_accuracies(n_way, k_shot, n_query, n_episodes):
    torch.manual_seed(0)
    model = PrototypicalNetworks(build_encoder("conv4", 1, 16)).eval()
    result = evaluate(model, DATA, n_way, k_shot, n_query, n_episodes=n_episodes, seed=11, progress=False)
    sampler = EpisodeSampler(DATA, n_way, k_shot, n_query, n_episodes, seed=11)
    accuracies = [protonet_accuracy_by_hand(model, sampler, i) for i in range(n_episodes)]
    mean, ci95 = interval(accuracies)
    assert len(set(accuracies)) > 1  # a spread to measure
    assert result.mean == pytest.approx(mean, abs=1e-6)
    assert result.ci95 == pytest.approx(ci95, rel=1e-5)
    assert result.std == pytest.approx(float(np.std(accuracies, ddof=1)), rel=1e-5)
    assert result.n_episodes == n_episodes


@torch.inference_mode()
def instance_accuracies_by_hand(model: MANN, n_episodes: int, batch_size: int, seed: int) -> np.ndarray:
    """``[episode, instance]`` accuracies, counting each step's appearance of its class in a Python loop."""
    episodes = model.sequence_episodes(DATA, seed, batch_size)
    rows = []
    for i in range(math.ceil(n_episodes / batch_size)):
        batch = episodes.batch(i)
        predicted = model.predict(batch).argmax(-1)
        for b in range(min(batch_size, n_episodes - i * batch_size)):
            seen, correct = [0] * model.n_classes, [0] * model.instances
            for label, guess in zip(batch.labels[b].tolist(), predicted[b].tolist()):
                seen[label] += 1
                correct[seen[label] - 1] += label == guess
            assert seen == [model.instances] * model.n_classes
            rows.append([c / model.n_classes for c in correct])
    return np.asarray(rows)


def test_mann_ci95_per_instance_is_1_96_std_over_sqrt_n():
    torch.manual_seed(0)
    model = MANN(FlattenEncoder(1, 16), memory="lrua", n_classes=3, instances=4, batch_size=4, controller_size=16,
                 slots=8, width=6, heads=2, augment=False).eval()
    result = evaluate_instances(model, DATA, n_episodes=30, batch_size=8, seed=5, progress=False)  # 4 batches, the last cut
    table = instance_accuracies_by_hand(model, n_episodes=30, batch_size=8, seed=5)
    assert table.shape == (30, 4) and (table.std(0) > 0).all()
    for k in range(4):
        mean, ci95 = interval(table[:, k].tolist())
        assert result.mean[k] == pytest.approx(mean, abs=1e-6), k
        assert result.ci95[k] == pytest.approx(ci95, rel=1e-5), k
    assert result.overall == pytest.approx(table.mean(), abs=1e-6)
