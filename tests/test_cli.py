"""The ``fewshot`` command end to end on a small image folder: train, resume, evaluate, and each user mistake."""
import json

import numpy as np
import pytest
from PIL import Image
from synthetic import make_dataset

from fewshot.cli.main import main
from fewshot.evaluation.evaluator import evaluate
from fewshot.runs import load_data, load_run


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    data = make_dataset(n_classes=12, per_class=6, size=16, seed=5)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        d = root / f"class{int(label):02d}"
        d.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy()).resize((24, 24)).save(d / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def train_args(folder, out, *extra):
    return ["train", "protonet", "--dataset", "folder", "--data-dir", str(folder), "--split", "0-5/6-7/8-11",
            "--image-size", "16", "--steps", "4", "--n-way", "3", "--k-shot", "1", "--n-query", "2",
            "--val-every", "2", "--val-way", "2", "--val-query", "2", "--val-episodes", "5",
            "--checkpoint-every", "2", "--out", str(out), "--no-progress", *extra]


def test_help_of_every_command(capsys):
    for argv in (["--help"], ["train", "--help"], ["train", "protonet", "--help"], ["evaluate", "--help"],
                 ["datasets", "--help"], ["plot", "--help"], ["plot", "curves", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--n-way" in out and "classes per training episode" in out and "--resume" in out
    assert "defaults shown are the built-in ones" in " ".join(out.split())  # the YAML config may set others


def test_train_resume_evaluate_and_plot(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(folder, run)) == 0
    assert {"config.yaml", "model.safetensors", "checkpoint.pt", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    assert main(train_args(folder, run, "--steps", "6", "--resume")) == 0
    assert "6 steps" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--ways", "2", "3", "--shots", "1", "--queries", "2", "--episodes", "20",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "2-way 1-shot" in printed and "3-way 1-shot" in printed
    results = json.loads((run / "evaluation.json").read_text())["folder/0-5/6-7/8-11/test"]
    assert set(results) == {"2-way 1-shot", "3-way 1-shot"}
    method, config = load_run(run)
    test_set = load_data(config, ("test",), progress=False)["test"]
    expected = evaluate(method, test_set, 2, 1, 2, n_episodes=20, seed=0, progress=False)
    saved = results["2-way 1-shot"]
    assert (saved["mean"], saved["ci95"], saved["n_episodes"]) == (expected.mean, expected.ci95, 20)
    png = tmp_path / "curves.png"
    assert main(["plot", "curves", str(run), "--out", str(png)]) == 0
    assert Image.open(png).size == (1000, 400)


def test_existing_run_is_refused_unless_resume_or_overwrite(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(folder, run, "--steps", "2")) == 0
    before = (run / "model.safetensors").read_bytes()
    assert main(train_args(folder, run)) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before  # nothing already written is touched
    assert main(train_args(folder, run, "--overwrite", "--steps", "2")) == 0


def test_resume_refuses_another_config(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(folder, run, "--steps", "2")) == 0
    assert main(train_args(folder, run, "--lr", "0.01", "--resume")) == 2
    assert "trained with other settings (lr: 0.001 (saved) vs 0.01 (now))" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value,message", [
    ("--encoder", "resnet99", "unknown encoder 'resnet99'; valid encoders: "),
    ("--dataset", "imagenet", "unknown dataset 'imagenet'; valid datasets: "),
    ("--distance", "l1", "unknown distance 'l1' for protonet; valid: squared_euclidean, euclidean, cosine"),
])
def test_unknown_names_list_the_valid_ones(folder, tmp_path, capsys, flag, value, message):
    assert main(train_args(folder, tmp_path / "run", flag, value)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_method_lists_methods(capsys):
    with pytest.raises(SystemExit):
        main(["train", "no-such-method"])
    assert "protonet" in capsys.readouterr().err


def test_missing_data_directory_and_missing_run(tmp_path, capsys):
    assert main(["train", "protonet", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"),
                 "--no-download"]) == 2
    assert "images_background.zip" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "no-run")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_impossible_evaluation_episode_says_what_to_change(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(folder, run, "--steps", "2")) == 0
    assert main(["evaluate", str(run), "--ways", "5", "--shots", "1", "--no-progress"]) == 2
    assert "5-way episodes need 5 classes" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--ways", "2", "--shots", "1", "--queries", "2", "--episodes", "10",
                 "--views", "4",
                 "--no-progress"]) == 0
    saved = json.loads((run / "evaluation.json").read_text())
    assert "2-way 1-shot 4 views" in next(iter(saved.values()))
