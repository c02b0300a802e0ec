"""User mistakes that end in one clear error: --resume without --out, resuming as another method, a corrupt
model.safetensors, malformed YAML and unknown keys, a NaN loss, and --device auto / cuda without a GPU."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from synthetic import make_dataset

from fewshot.cli.main import main
from fewshot.device import resolve_device
from fewshot.errors import FewShotError
from fewshot.runs import MODEL_FILE, build_method
from fewshot.training.config import RunConfig, read_yaml, resolve_config
from fewshot.training.trainer import Trainer

DATA = make_dataset(n_classes=8, per_class=5, size=16, seed=5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("images")
    for i, (image, label) in enumerate(zip(DATA.images, DATA.labels)):
        (root / f"c{int(label)}").mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy()).save(root / f"c{int(label)}" / f"{i}.png")
    return root


@pytest.fixture
def run(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", "protonet", "--dataset", "folder", "--data-dir", str(folder), "--split", "0-3/4-5/6-7",
                 "--image-size", "16", "--steps", "2", "--n-way", "3", "--k-shot", "1", "--n-query", "2",
                 "--val-every", "0", "--checkpoint-every", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def error_of(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_resume_needs_out(capsys):
    assert "--resume needs --out RUN_DIR" in error_of(["train", "protonet", "--resume"], capsys)


def test_resuming_as_another_method_is_refused(run, capsys):
    err = error_of(["train", "siamese", "--out", str(run), "--resume", "--no-progress"], capsys)
    assert f"{run} holds a 'protonet' run; it cannot be resumed as 'siamese'" in err


def test_a_corrupt_model_file_is_one_clear_error(run, capsys):
    (run / MODEL_FILE).write_bytes((run / MODEL_FILE).read_bytes()[:100])  # truncated
    err = error_of(["evaluate", str(run), "--ways", "2", "--episodes", "2", "--no-progress"], capsys)
    assert f"{run / MODEL_FILE} is not a readable safetensors file" in err and "retrain or restore it" in err


def test_malformed_yaml_and_unknown_keys(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [0.1\nsteps: 3\n")
    with pytest.raises(FewShotError, match="is not valid YAML"):
        read_yaml(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- lr\n- steps\n")
    with pytest.raises(FewShotError, match="must hold a mapping of keys to values"):
        read_yaml(listed)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("lr: 0.01\nlearning_rate: 0.1\nstep: 3\n")
    with pytest.raises(FewShotError, match=r"unknown\.yaml: unknown keys learning_rate, step; valid keys: .*lr"):
        resolve_config("protonet", unknown)
    assert "is not valid YAML" in error_of(["train", "protonet", "--config", str(broken)], capsys)
    assert "not found; available: " in error_of(["train", "protonet", "--config", str(tmp_path / "none.yaml")],
                                                capsys)


def test_a_nan_loss_stops_training_and_says_what_to_do(tmp_path):
    config = RunConfig(image_size=16, steps=3, val_every=0, lr=1e30, options={"n_way": 3, "k_shot": 1, "n_query": 2})
    method = build_method(config)
    with torch.no_grad():
        next(method.parameters()).fill_(math.nan)
    trainer = Trainer(method, config, DATA, None, tmp_path, progress=False)
    with pytest.raises(FewShotError, match=r"the loss became nan at step 0, and training stopped .*lower the "
                                           r"learning rate \(--lr\) or set --grad-clip and train again"):
        trainer.fit()


def test_device_auto_and_cuda_without_a_gpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FewShotError, match="--device cuda was asked for but no CUDA GPU is available"):
            resolve_device("cuda")
    with pytest.raises(FewShotError, match="unknown device 'tpu'; use one of: auto, cpu, cuda"):
        resolve_device("tpu")
