"""``--resume`` as the README promises it: a run killed (SIGKILL) or stopped (SIGTERM) between two
checkpoints, then resumed, ends exactly where an uninterrupted run ends: the same weights, the same best
validation score, the same learning rate at every logged step, and a metrics log with no record twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import load_file
from synthetic import make_dataset

from fewshot.runs import METRICS_FILE, MODEL_FILE
from fewshot.training.checkpoint import load_checkpoint

STEPS, CHECKPOINT_EVERY, VAL_EVERY, LR, LR_STEP, LR_GAMMA = 30, 10, 2, 1e-3, 3, 0.7


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    data = make_dataset(n_classes=12, per_class=8, size=28, seed=5)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        (root / f"class{int(label):02d}").mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy()).save(root / f"class{int(label):02d}" / f"{i}.png")
    return root


def train(folder: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``fewshot train protonet`` in its own process, one thread, on the folder's classes."""
    argv = [sys.executable, "-m", "fewshot", "train", "protonet", "--dataset", "folder", "--data-dir", str(folder),
            "--split", "0-5/6-8/9-11", "--image-size", "28", "--steps", str(STEPS), "--n-way", "5",
            "--k-shot", "1", "--n-query", "5", "--lr", str(LR), "--lr-step", str(LR_STEP), "--lr-gamma", str(LR_GAMMA),
            "--val-every", str(VAL_EVERY), "--val-way", "3", "--val-query", "2", "--val-episodes", "60",
            "--checkpoint-every", str(CHECKPOINT_EVERY), "--threads", "1", "--device", "cpu", "--no-progress",
            "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FEWSHOT_CACHE": str(out.parent / "cache")}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, code: int = 0) -> None:
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, out + err


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def stop_between_checkpoints(process: subprocess.Popen, run: Path, sig: signal.Signals, phase: float = 0.0) -> int:
    """Send ``sig`` after the first checkpoint, ``phase`` of a validation cycle after a validation record
    appears (phase 0.75: during the next validation, which takes most of a cycle); returns the record's step."""
    deadline, seen = time.monotonic() + 120, {}
    while time.monotonic() < deadline and process.poll() is None:
        if (run / METRICS_FILE).exists():
            for r in records(run):
                if r.get("event") == "validation":
                    seen.setdefault(r["step"], time.monotonic())
            steps = sorted(seen)
            if len(steps) >= 2 and steps[-1] > CHECKPOINT_EVERY:
                time.sleep(phase * (seen[steps[-1]] - seen[steps[-2]]))
                process.send_signal(sig)
                return steps[-1]
        time.sleep(0.002)
    raise AssertionError(f"the run ended before it could be stopped: {process.communicate()}")


@pytest.fixture(scope="module")
def uninterrupted(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("full") / "run"
    finish(train(folder, run))
    return run


def assert_same_end(run: Path, reference: Path) -> None:
    mine, theirs = load_file(run / MODEL_FILE), load_file(reference / MODEL_FILE)
    assert mine.keys() == theirs.keys()
    for name, value in theirs.items():
        assert value.equal(mine[name]), name
    ends = [[r for r in records(path) if r["event"] == "end"] for path in (run, reference)]
    assert len(ends[0]) == 1 and ends[0][0]["best_val_accuracy"] == ends[1][0]["best_val_accuracy"]
    assert ends[0][0]["step"] == STEPS and not ends[0][0]["interrupted"]
    validations = [[(r["step"], r["val_accuracy"], r["best"]) for r in records(path) if r["event"] == "validation"]
                   for path in (run, reference)]
    assert validations[0] == validations[1] and len(validations[0]) == STEPS // VAL_EVERY
    assert load_checkpoint(run / "checkpoint.pt")["best"] == ends[1][0]["best_val_accuracy"]
    for r in records(run):
        if r["event"] == "train":  # the StepLR schedule, restored: lr * gamma ** (step // lr_step)
            assert r["lr"] == pytest.approx(LR * LR_GAMMA ** (r["step"] // LR_STEP), rel=1e-12), r
    lr = [{r["step"]: r["lr"] for r in records(path) if r["event"] == "train"} for path in (run, reference)]
    assert {s: lr[0][s] for s in lr[1]} == lr[1]
    keys = [(r["event"], r["step"]) for r in records(run)]
    assert len(keys) == len(set(keys)), "a record appears twice"


def test_resume_after_sigkill_between_checkpoints_equals_an_uninterrupted_run(folder, tmp_path, uninterrupted):
    run = tmp_path / "run"
    process = train(folder, run)
    seen = stop_between_checkpoints(process, run, signal.SIGKILL)
    finish(process, -signal.SIGKILL)
    saved = load_checkpoint(run / "checkpoint.pt")["step"]
    assert saved % CHECKPOINT_EVERY == 0 and 0 < saved < seen < STEPS  # records after the checkpoint were written
    finish(train(folder, run, "--resume"))
    assert_same_end(run, uninterrupted)
    assert without_times(records(run)) == without_times(records(uninterrupted))


def test_resume_after_sigterm_equals_an_uninterrupted_run(folder, tmp_path, uninterrupted):
    run = tmp_path / "run"
    process = train(folder, run)
    stop_between_checkpoints(process, run, signal.SIGTERM, phase=0.75)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "--resume" in err, out + err
    stopped = load_checkpoint(run / "checkpoint.pt")["step"]
    assert CHECKPOINT_EVERY < stopped < STEPS  # SIGTERM writes a checkpoint at the step it stopped
    assert [r for r in records(run) if r["event"] == "end"][-1]["interrupted"]
    finish(train(folder, run, "--resume"))
    assert_same_end(run, uninterrupted)
