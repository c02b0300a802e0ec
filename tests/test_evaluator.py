import math

import torch
from synthetic import make_dataset

from fewshot.evaluation.evaluator import _evaluate_per_episode, evaluate, mean_and_ci95
from fewshot.data.episodes import EpisodeSampler
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.nets import build_encoder

DATA = make_dataset(n_classes=10, per_class=8, size=16, seed=3)


def model():
    torch.manual_seed(0)
    return PrototypicalNetworks(build_encoder("conv4", 1, 16)).eval()


def test_confidence_interval_is_1_96_std_over_sqrt_n():
    acc = torch.tensor([1.0, 0.5, 0.75, 0.25])
    mean, ci, std = mean_and_ci95(acc)
    assert mean == 0.625 and math.isclose(ci, 1.96 * acc.std().item() / 2)


def test_cached_embeddings_give_the_same_accuracies_as_episode_by_episode():
    m = model()
    fast = evaluate(m, DATA, 5, 2, 3, n_episodes=30, seed=7, progress=False)
    sampler = EpisodeSampler(DATA, 5, 2, 3, 30, seed=7)
    with torch.inference_mode():
        slow = _evaluate_per_episode(m, sampler, torch.device("cpu"), _NoBar())
    assert math.isclose(fast.mean, slow.mean().item(), abs_tol=1e-6)


def test_same_seed_same_episodes_same_result():
    a = evaluate(model(), DATA, 5, 1, 3, n_episodes=50, seed=1, progress=False)
    b = evaluate(model(), DATA, 5, 1, 3, n_episodes=50, seed=1, progress=False)
    assert a.mean == b.mean and a.ci95 == b.ci95 and a.n_episodes == 50
    assert "5-way 1-shot" in str(a)


class _NoBar:
    def update(self, n):
        pass
