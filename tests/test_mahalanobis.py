"""The Mahalanobis classifier (Simple CNAPS): shrunk covariances, 1-shot classes, the test-time head."""
import json

import pytest
import torch
from synthetic import make_dataset
from training_support import mean, train_briefly

from fewshot.cli.main import main
from fewshot.errors import FewShotError
from fewshot.evaluation import evaluate
from fewshot.evaluation.heads import with_head
from fewshot.methods.mahalanobis import MahalanobisClassifier, mahalanobis_scores
from fewshot.methods.mann import MANN
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.nets import build_encoder
from fewshot.runs import load_data, load_run


def reference_scores(support, labels, query, n_way, ridge):
    """Eq. 2-3 written out class by class with explicit inverses."""
    task = torch.cov(support.T) if len(support) > 1 else torch.zeros(support.shape[1], support.shape[1])
    out = torch.empty(len(query), n_way)
    for k in range(n_way):
        members = support[labels == k]
        n = len(members)
        own = torch.cov(members.T) if n > 1 else torch.zeros_like(task)
        shrink = n / (n + 1)
        q = shrink * own + (1 - shrink) * task + ridge * torch.eye(support.shape[1])
        diff = query - members.mean(0)
        out[:, k] = -((diff @ torch.linalg.inv(q)) * diff).sum(-1)
    return out


def test_identity_covariances_rank_as_squared_euclidean():
    # four classes at (+-2, 0), (0, +-2), each with examples at mean +-(1, 0), +-(0, 1): every class's
    # covariance and the task's are multiples of the identity, so every Q_k is the same c * I.
    means = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    offsets = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    support = (means[:, None] + offsets[None]).reshape(16, 2)
    labels = torch.arange(4).repeat_interleave(4)
    query = torch.randn(10, 2, generator=torch.Generator().manual_seed(0)) * 2
    scores = mahalanobis_scores(support, labels, query, 4, ridge=1.0)
    squared = torch.cdist(query, means).pow(2)
    task_variance = torch.cov(support.T)[0, 0]
    c = 0.8 * (2 / 3) + 0.2 * task_variance + 1.0  # l_k = 4/5; S_k = 2/3 I
    assert torch.allclose(scores, -squared / c, atol=1e-5)
    assert torch.equal(scores.argmax(-1), squared.argmin(-1))


def test_scores_equal_the_equations_with_one_shot_classes_and_batched_episodes():
    g = torch.Generator().manual_seed(1)
    support = torch.randn(2, 7, 5, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 3])  # classes 1 and 3 have one example: no covariance of their own
    query = torch.randn(2, 4, 5, generator=g)
    scores = mahalanobis_scores(support, labels, query, 4, ridge=0.5)
    for e in range(2):
        assert torch.allclose(scores[e], reference_scores(support[e], labels, query[e], 4, 0.5), atol=1e-4)
    single = mahalanobis_scores(support[0, :1], labels[:1], query[0], 1, ridge=2.0)  # a task of one example
    assert torch.allclose(single, -(query[0] - support[0, 0]).pow(2).sum(-1, keepdim=True) / 2.0, atol=1e-5)


def test_trains_as_a_head_above_chance(one_thread):
    data = make_dataset(n_classes=24, per_class=10, size=16, seed=1)
    train, test = data.subset(range(16)), data.subset(range(16, 24))
    torch.manual_seed(0)
    model = MahalanobisClassifier(build_encoder("conv4", 1, 16), n_way=8, k_shot=3, n_query=3)
    losses = train_briefly(model, train, 30)
    after = evaluate(model, test, n_way=4, k_shot=3, n_query=3, n_episodes=100, progress=False).mean
    assert mean(losses[-5:]) < 0.7 * mean(losses[:5])
    assert after > 0.5  # chance is 0.25


def test_head_shares_the_trained_encoder_and_refuses_mann():
    protonet = PrototypicalNetworks(build_encoder("conv4", 1, 16)).eval()
    head = with_head(protonet, "mahalanobis")
    assert head.encoder is protonet.encoder and not head.training
    with pytest.raises(FewShotError, match="valid heads: mahalanobis"):
        with_head(protonet, "svm")
    with pytest.raises(FewShotError, match="does not embed single images"):
        with_head(MANN(build_encoder("flatten", 1, 16)), "mahalanobis")
    with pytest.raises(FewShotError, match="ridge must be positive"):
        MahalanobisClassifier(build_encoder("conv4", 1, 16), ridge=0)


def test_evaluate_with_the_head_saves_its_own_figures(proto_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    args = ["evaluate", str(proto_run), "--ways", "3", "--shots", "2", "--queries", "2", "--episodes", "30", "--seed", "4",
            "--no-progress"]
    assert main(args) == 0
    assert main([*args, "--head", "mahalanobis"]) == 0
    assert "with the mahalanobis head" in capsys.readouterr().out
    saved = json.loads((proto_run / "evaluation.json").read_text())
    assert set(saved) == {"folder/0-9/10-15/test", "folder/0-9/10-15/test mahalanobis head"}
    method, config = load_run(proto_run)
    test = load_data(config, ("test",), progress=False)["test"]
    expected = evaluate(with_head(method, "mahalanobis"), test, 3, 2, 2, 30, 4, progress=False)
    assert expected.mean != pytest.approx(evaluate(method, test, 3, 2, 2, 30, 4, progress=False).mean)  # tells them apart
    assert saved["folder/0-9/10-15/test mahalanobis head"]["3-way 2-shot"]["mean"] == pytest.approx(expected.mean)
    assert expected.mean > 1 / 3
