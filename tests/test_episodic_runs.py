"""Matching, Relation and Mahalanobis runs end to end: train, save, load, evaluate; impossible episodes refused."""
import json

import pytest
import torch
from gallery_support import TRAIN_SPLIT, train_run
from safetensors.torch import load_file

from fewshot.cli.main import main
from fewshot.evaluation import evaluate
from fewshot.runs import load_data, load_run

RUNS = {
    "matching": ("--fce", "--n-way", "4", "--n-query", "2"),
    "relation": ("--image-size", "24", "--n-way", "4", "--n-query", "2"),
    "mahalanobis": ("--n-way", "4", "--k-shot", "2", "--n-query", "2"),
}


@pytest.mark.parametrize("method", list(RUNS))
def test_train_save_load_evaluate_round_trip(method, shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    run = train_run(shapes, tmp_path / method, method, *RUNS[method], steps=4)
    model, config = load_run(run)
    saved = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert main(["evaluate", str(run), "--ways", "3", "--shots", "1", "2", "--queries", "2", "--episodes", "20",
                 "--no-progress"]) == 0
    figures = json.loads((run / "evaluation.json").read_text())[f"folder/{TRAIN_SPLIT}/test"]
    test = load_data(config, ("test",), progress=False)["test"]
    again = evaluate(model, test, n_way=3, k_shot=2, n_query=2, n_episodes=20, progress=False)
    assert figures["3-way 2-shot"]["mean"] == pytest.approx(again.mean)
    assert figures["3-way 1-shot"]["n_episodes"] == 20


@pytest.mark.parametrize("method", list(RUNS))
def test_impossible_training_episodes_are_refused_clearly(method, shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    code = main(["train", method, "--dataset", "folder", "--data-dir", str(shapes), "--split", TRAIN_SPLIT,
                 "--image-size", "24", "--steps", "2", "--val-every", "0", "--n-way", "11", "--out",
                 str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    assert "11-way episodes need 11 classes but" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
