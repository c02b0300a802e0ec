"""``--tracker tensorboard|wandb`` for real on a tiny run: the TensorBoard event file and the W&B offline run
are read back and hold the numbers of ``metrics.jsonl``, with the run's config."""
from __future__ import annotations

import json
import re
import struct
import sys
import time
from pathlib import Path

import pytest
import yaml
from synthetic import make_dataset

from fewshot.errors import FewShotError
from fewshot.runs import METRICS_FILE, build_method
from fewshot.training.config import RunConfig
from fewshot.training.trackers import WandbTracker, scalars
from fewshot.training.trainer import Trainer

DATA = make_dataset(n_classes=16, per_class=8, size=16, seed=2)
TRAIN, VAL = DATA.subset(range(10)), DATA.subset(range(10, 16))


def tracked(tracker: str) -> RunConfig:
    return RunConfig(image_size=16, steps=10, val_every=5, val_episodes=5, val_way=3, val_query=3,
                     tracker=tracker, options={"n_way": 5, "k_shot": 1, "n_query": 2})


def train(run: Path, tracker: str) -> list[dict]:
    """A 10-step run tracked by ``tracker``; returns its metrics records as scalars per step."""
    config = tracked(tracker)
    Trainer(build_method(config), config, TRAIN, VAL, run, progress=False).fit()
    return [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]


def test_tensorboard_event_file_holds_the_metrics_and_the_config(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = train(tmp_path, "tensorboard")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    for row in rows:
        for name, value in scalars(row).items():
            logged = {e.step: e.value for e in events.Scalars(name)}
            assert logged[row["step"]] == pytest.approx(value, rel=1e-6), name
    assert {"train/loss", "validation/val_accuracy", "end/best_val_accuracy"} <= set(events.Tags()["scalars"])
    (text,) = events.Tensors("config/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    lines = shown.splitlines()
    assert lines[0] == "    method: protonet"  # the config's own order, not sorted
    assert all(line.startswith("    ") for line in lines)  # a Markdown code block
    assert yaml.safe_load("\n".join(line[4:] for line in lines)) == tracked("tensorboard").to_dict()


def wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file (W&B's log: 32 KiB blocks of chunks, each with a 7-byte
    header of CRC, length and type; type 1 is a whole record, 2-4 its first, middle and last chunks)."""
    from wandb.proto import wandb_internal_pb2

    data, records, chunks, position = path.read_bytes(), [], b"", 7  # after the file header "W&B..."
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position:position + 7]) if room >= 7 else (0, 0, 0)
        if kind == 0:
            position += room
            continue
        chunks += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def test_wandb_offline_run_holds_the_metrics_and_the_config(tmp_path, monkeypatch, one_thread):
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    run.mkdir()
    rows = train(run, "wandb")
    (log,) = run.glob("wandb/offline-run-*/run-*.wandb")
    steps = {row["step"] for row in rows}
    deadline = time.monotonic() + 20  # W&B's service process may still be writing the file on a loaded machine
    while True:
        records = wandb_records(log)
        history: dict[int, dict[str, float]] = {}
        for record in records:
            if record.WhichOneof("record_type") == "history":
                values = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                          for item in record.history.item}
                history[int(values["_step"])] = values
        if steps <= set(history) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert steps <= set(history), f"steps logged {sorted(steps)}, in the W&B log {sorted(history)}"
    for row in rows:
        for name, value in scalars(row).items():
            assert history[row["step"]][name] == pytest.approx(value, rel=1e-6), name
    (config,) = [r.run.config for r in records if r.WhichOneof("record_type") == "run"]
    values = {item.key: json.loads(item.value_json) for item in config.update}
    assert values["method"] == "protonet" and values["tracker"] == "wandb"
    run_id = (run / "wandb-id.txt").read_text().strip()
    assert run_id == log.stem.removeprefix("run-") and re.fullmatch("[0-9a-f]{8}", run_id)
    (started,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (started.project, started.display_name, started.run_id) == ("fewshot", "run", run_id)
    monkeypatch.setenv("WANDB_PROJECT", "elsewhere")
    again = WandbTracker(run, tracked("wandb"))  # a resumed training: the same W&B run
    assert (again.run.id, again.run.project, again.run.name) == (run_id, "elsewhere", "run")
    print("the trainer's progress bar")
    again.close()
    assert not list(run.glob("wandb/*/files/output.log"))  # console="off": W&B does not copy the terminal


def test_scalars_are_the_numbers_of_a_record_but_its_step():
    record = {"event": "validation", "step": 5, "val_accuracy": 0.5, "lr": 1, "best": True, "note": "x",
              "missing": None}
    assert scalars(record) == {"validation/val_accuracy": 0.5, "validation/lr": 1.0}


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_a_tracker_that_is_not_installed_names_its_extra(tracker, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, tracker, None)  # what Python does for a package that cannot be imported
    config = RunConfig(image_size=16, tracker=tracker, options={"n_way": 5, "k_shot": 1, "n_query": 2})
    with pytest.raises(FewShotError, match=rf"pip install 'fewshot\[{tracker}\]'"):
        Trainer(build_method(config), config, TRAIN, None, tmp_path, progress=False)
