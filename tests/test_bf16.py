"""bfloat16 autocast (``bf16: true`` in the ProtoNet and Siamese Omniglot configs) on a tiny Conv-4.

Stated tolerances: under bf16 the scores of an episode are within 2% of the largest float32 score and pick
the same classes, embeddings are within 1% (relative norm of the difference), evaluated accuracy is within
2 points and a training step's loss within 2%. Distances are computed in float32 under autocast
(``full_precision``): exactly the float32 numbers of their inputs, where bfloat16 sums would be far off.
"""
from __future__ import annotations

import pytest
import torch
from synthetic import make_dataset

from fewshot.data.episodes import EpisodeSampler
from fewshot.distances import DISTANCES, get_distance
from fewshot.evaluation.evaluator import Evaluator
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.nets import build_encoder
from fewshot.runs import build_method
from fewshot.training.config import RunConfig
from fewshot.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = make_dataset(n_classes=10, per_class=8, size=16, seed=3)


def bf16() -> torch.autocast:
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


def tiny_protonet() -> PrototypicalNetworks:
    torch.manual_seed(0)
    return PrototypicalNetworks(build_encoder("conv4", 1, 16)).eval()


@pytest.mark.parametrize("name", DISTANCES.names())
def test_distances_stay_float32_under_autocast(name):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 32, generator=g) + 30, torch.randn(4, 32, generator=g) + 30  # large norms, small gaps
    distance = get_distance(name)
    for x, y in ((a, b), (a.bfloat16(), b.bfloat16())):
        expected_matrix, expected_rows = distance.matrix(x.float(), y.float()), distance.pairwise(x[:4].float(), y.float())
        with bf16():
            matrix, rows = distance.matrix(x, y), distance.pairwise(x[:4], y)
        assert matrix.dtype == rows.dtype == torch.float32
        assert torch.equal(matrix, expected_matrix) and torch.equal(rows, expected_rows)


def test_bfloat16_sums_would_lose_the_squared_distances():
    """Why ``full_precision`` exists: the same expansion under autocast is off by more than the distances."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 32, generator=g) + 30, torch.randn(4, 32, generator=g) + 30
    exact = get_distance("squared_euclidean").matrix(a, b)
    with bf16():
        naive = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None] - 2 * a @ b.T  # the product a.b in bfloat16
    assert (naive - exact).abs().max() > 0.5 * exact.mean()


@torch.inference_mode()
def test_bf16_scores_agree_with_float32():
    model = tiny_protonet()
    episode = EpisodeSampler(DATA, 5, 1, 3, 1, seed=1).episode(0)

    def scores() -> tuple[torch.Tensor, torch.Tensor]:
        support = model.embed_support(episode.support)
        return support, model.scores(support, episode.support_labels, model.embed_query(episode.query), 5)

    support32, scores32 = scores()
    with bf16():
        support16, scores16 = scores()
    assert support16.dtype == torch.bfloat16 and scores16.dtype == torch.float32  # encoder in bf16, distance not
    assert (scores16 - scores32).abs().max() <= 0.02 * scores32.abs().max()
    assert torch.equal(scores16.argmax(-1), scores32.argmax(-1))
    assert (support16.float() - support32).norm() <= 0.01 * support32.norm()


def test_bf16_evaluation_agrees_with_float32():
    model = tiny_protonet()
    plain, autocast = Evaluator(model, DATA, progress=False), Evaluator(model, DATA, progress=False, bf16=True)
    emb32, emb16 = plain.embeddings()[0], autocast.embeddings()[0]
    assert emb16.dtype == torch.float32 and (emb16 - emb32).norm() <= 0.01 * emb32.norm()
    assert not torch.equal(emb16, emb32)  # autocast did run in bfloat16
    a, b = plain.evaluate(5, 1, 3, n_episodes=100, seed=2), autocast.evaluate(5, 1, 3, n_episodes=100, seed=2)
    assert abs(a.mean - b.mean) <= 0.02


def test_bf16_training_step_loss_agrees_with_float32(tmp_path):
    losses = []
    for flag in (False, True):
        config = RunConfig(image_size=16, steps=1, val_every=0, bf16=flag, 
                           options={"n_way": 5, "k_shot": 1, "n_query": 2})
        torch.manual_seed(0)
        trainer = Trainer(build_method(config), config, DATA, None, tmp_path / str(flag), progress=False)
        losses.append(trainer._train_step()["loss"])
    assert losses[1] == pytest.approx(losses[0], rel=0.02) and losses[1] != losses[0]
