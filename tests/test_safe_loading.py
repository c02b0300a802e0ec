"""Loading never runs code: a checkpoint or weights file that carries a pickled object whose unpickling
would run code is refused with a clear error, and the code does not run (a marker file it would write
stays absent, while an unsafe ``torch.load`` of the same file does write it)."""
from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from synthetic import make_dataset

from fewshot.cli.main import main
from fewshot.errors import FewShotError
from fewshot.runs import CHECKPOINT_FILE, MODEL_FILE, build_method, load_config, load_weights
from fewshot.training.checkpoint import load_checkpoint


class RunsCode:
    """Unpickling this object calls ``exec``, which writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def malicious_files(marker: Path) -> dict[str, bytes]:
    """The same payload as a torch zip checkpoint (beside real tensors) and as a bare pickle."""
    state = {"model": {"weight": torch.zeros(2)}, "step": 3, "payload": RunsCode(marker)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return {"zip": buffer.getvalue(), "pickle": pickle.dumps(state, protocol=2)}


@pytest.mark.parametrize("kind", ["zip", "pickle"])
def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_does_not_run(tmp_path, kind):
    marker = tmp_path / "ran.txt"
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(malicious_files(marker)[kind])
    with pytest.raises(FewShotError, match=f"checkpoint {re.escape(str(path))} cannot be read .*--overwrite"):
        load_checkpoint(path)
    assert not marker.exists()
    unsafe_load = {"zip": lambda f: torch.load(f, weights_only=False), "pickle": pickle.load}[kind]
    with open(path, "rb") as f:
        unsafe_load(f)  # the file does carry code: loading it unsafely runs it
    assert marker.read_text() == "ran"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny ProtoNet run of two steps on an image folder."""
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "images"
    data = make_dataset(n_classes=8, per_class=5, size=16, seed=5)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        (folder / f"c{int(label)}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"c{int(label)}" / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "protonet", "--dataset", "folder", "--data-dir", str(folder), "--split", "0-3/4-5/6-7",
                 "--image-size", "16", "--steps", "2", "--n-way", "3", "--k-shot", "1", "--n-query", "2",
                 "--val-every", "0", "--checkpoint-every", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def test_resume_and_evaluate_refuse_files_that_would_run_code(run, tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    payload = malicious_files(marker)["zip"]
    (run / CHECKPOINT_FILE).write_bytes(payload)
    config = load_config(run)
    argv = ["train", "protonet", "--out", str(run), "--resume", "--steps", "4", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and "Traceback" not in err
    (run / MODEL_FILE).write_bytes(payload)  # safetensors never unpickles: a pickle there is just unreadable
    with pytest.raises(FewShotError, match="is not a readable safetensors file"):
        load_weights(build_method(config), run / MODEL_FILE, config)
    assert main(["evaluate", str(run), "--ways", "2", "--episodes", "2", "--no-progress"]) == 2
    assert "is not a readable safetensors file" in capsys.readouterr().err
    assert not marker.exists()
