"""Ensembles of trained runs: the members' probabilities averaged, on the evaluator's cached embeddings."""
import json

import pytest
import torch
from synthetic import make_dataset
from test_cli import folder, train_args  # noqa: F401  (the fixture and the small training command)
from test_mann import small_mann

from fewshot.cli.main import main
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError
from fewshot.evaluation.ensemble import Ensemble
from fewshot.evaluation.evaluator import Evaluator
from fewshot.methods.matching import MatchingNetworks
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.nets import build_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


def protonet(seed: int) -> PrototypicalNetworks:
    torch.manual_seed(seed)
    return PrototypicalNetworks(build_encoder("conv4", 1, 28), distance="euclidean").eval()


def test_an_ensemble_averages_its_members_probabilities():
    a, b, data = protonet(0), protonet(1), make_dataset(n_classes=8, per_class=6)
    result = Evaluator(Ensemble([a, b], (1, 28, 28)), data, progress=False).evaluate(4, 1, 3, n_episodes=8)
    sampler = EpisodeSampler(data, 4, 1, 3, n_episodes=8)
    expected = []
    with torch.no_grad():
        for i in range(8):
            ep = sampler.episode(i)
            probs = sum(m.scores(m.encoder(ep.support), ep.support_labels, m.encoder(ep.query), 4).softmax(-1)
                        for m in (a, b))
            expected.append((probs.argmax(-1) == ep.query_labels).float().mean())
    assert result.mean == pytest.approx(torch.stack(expected).mean().item(), abs=1e-6)
    alone = Evaluator(a, data, progress=False).evaluate(4, 1, 3, n_episodes=8)
    twice = Evaluator(Ensemble([a, a], (1, 28, 28)), data, progress=False).evaluate(4, 1, 3, n_episodes=8)
    assert twice.mean == pytest.approx(alone.mean, abs=1e-6)  # a model with itself decides as the model does


def test_what_cannot_make_an_ensemble_is_refused():
    with pytest.raises(FewShotError, match="at least 2 trained runs"):
        Ensemble([protonet(0)], (1, 28, 28))
    with pytest.raises(FewShotError, match="mann does not embed each image on its own"):
        Ensemble([protonet(0), small_mann()], (1, 28, 28))
    fce = MatchingNetworks(build_encoder("conv4", 1, 28), fce=True)  # its context is taken in scores: it can
    assert Ensemble([protonet(0), fce], (1, 28, 28)).dims == [64, 64]
    with pytest.raises(FewShotError, match="train each member with fewshot train"):
        Ensemble([protonet(0), protonet(1)], (1, 28, 28)).training_batches(make_dataset(), 1, 0)


def test_evaluate_ensemble_from_the_command_line(folder, tmp_path, capsys):  # noqa: F811
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    assert main(train_args(folder, runs[0], "--steps", "2")) == 0
    assert main(train_args(folder, runs[1], "--steps", "2", "--seed", "1")) == 0
    assert main(train_args(folder, runs[2], "--steps", "2", "--image-size", "20")) == 0
    common = ["--ways", "2", "--shots", "1", "--queries", "2", "--episodes", "10", "--no-progress"]
    assert main(["evaluate", str(runs[0]), "--ensemble", str(runs[1]), *common]) == 0
    saved = json.loads((runs[0] / "evaluation.json").read_text())
    assert any(key.endswith("ensemble of 2") and "2-way 1-shot" in section for key, section in saved.items())
    capsys.readouterr()
    assert main(["evaluate", str(runs[0]), "--ensemble", str(runs[2]), *common]) == 2
    assert "takes 1-channel 20x20 images" in capsys.readouterr().err
