"""Promises of the trainer that mutation testing (benchmarks/mutation.sh training/trainer.py) found no test for.

Each test names the promise it keeps; docs/benchmarks.md lists the mutants they kill."""
from __future__ import annotations

import json
import math
import re
import time

import pytest
import torch
from test_trainer import TRAIN, VAL, config
from test_trainer import records as all_records

from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import evaluate
from fewshot.evaluation.instances import evaluate_instances
from fewshot.methods.mann import MANN
from fewshot.nets.flatten import FlattenEncoder
from fewshot.runs import CHECKPOINT_FILE, METRICS_FILE, MODEL_FILE, build_method, load_weights
from fewshot.training import trainer as trainer_module
from fewshot.training.checkpoint import load_checkpoint, save_checkpoint
from fewshot.training.trainer import Trainer, make_optimizer, make_scheduler, validation_accuracy


def trainer(run_dir, cfg, val_set=VAL, **kwargs) -> Trainer:
    run_dir.mkdir(exist_ok=True)
    return Trainer(build_method(cfg), cfg, TRAIN, val_set, run_dir, **{"progress": False, **kwargs})


def records(run_dir, event=None) -> list[dict]:
    return [r for r in all_records(run_dir) if event is None or r["event"] == event]


def test_the_optimizer_and_the_schedule_are_the_ones_the_config_names():
    method = build_method(config())
    for name, kind in (("rmsprop", torch.optim.RMSprop), ("adam", torch.optim.Adam)):
        optimizer = make_optimizer(method, config(optimizer=name, lr=0.02, weight_decay=0.1))
        assert type(optimizer) is kind
        assert optimizer.param_groups[0]["lr"] == 0.02 and optimizer.param_groups[0]["weight_decay"] == 0.1
        assert optimizer.param_groups[0]["params"] == list(method.parameters())
    optimizer = make_optimizer(method, config(lr=0.02))
    scheduler = make_scheduler(optimizer, config(lr_schedule="cosine", steps=10))
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # half-way down the cosine


def test_progress_bars_and_validation_lines_show_by_default_and_never_when_turned_off(tmp_path, capfd, monkeypatch):
    trainer(tmp_path / "quiet", config()).fit()
    assert capfd.readouterr() == ("", "")
    cfg = config()
    (tmp_path / "shown").mkdir()
    scores = iter([0.9, 0.5, 0.95])
    monkeypatch.setattr(trainer_module, "validation_accuracy", lambda method, dataset, cfg: next(scores))
    Trainer(build_method(cfg), cfg, TRAIN, VAL, tmp_path / "shown").fit()
    out, err = capfd.readouterr()
    assert "train protonet" in err and "6/6" in err and "loss=" in err and "acc=" in err and "None" not in err
    assert ("step/s" in err or "s/step" in err) and "7/6" not in err and "12/6" not in err and "XX" not in err
    bars = [chunk for chunk in re.split(r"[\r\n]", err) if "%|" in chunk]
    assert bars and all(chunk.startswith("train protonet") for chunk in bars)  # no evaluation bar in validation
    assert out.splitlines() == ["step 3: validation accuracy 0.9000 (best)", "step 6: validation accuracy 0.5000"]
    Trainer(build_method(cfg), config(steps=9), TRAIN, VAL, tmp_path / "shown").fit(resume=True)
    out, err = capfd.readouterr()
    assert "7/9" in err and out == "step 9: validation accuracy 0.9500 (best)\n"  # resumed at the checkpoint's step


def test_the_log_has_a_record_every_ten_steps_and_at_the_last_with_the_window_means(tmp_path):
    t = trainer(tmp_path, config(steps=23, val_every=0, checkpoint_every=100))
    returned = []
    real_step = t._train_step
    t._train_step = lambda: returned.append(real_step()) or returned[-1]
    summary = t.fit()
    train = records(tmp_path, "train")
    assert [r["step"] for r in train] == [10, 20, 23]
    assert all(set(r) == {"event", "step", "loss", "accuracy", "lr", "elapsed_s"} for r in train)
    for record, window in zip(train, (returned[:10], returned[10:20], returned[20:])):
        assert record["loss"] == pytest.approx(sum(m["loss"] for m in window) / len(window))
        assert record["accuracy"] == pytest.approx(sum(m["accuracy"] for m in window) / len(window))
    assert summary["step"] == 23 and summary["best_val_accuracy"] is None
    assert (tmp_path / MODEL_FILE).exists()  # no validation: the final weights are the model


def test_validation_runs_every_val_every_steps_once_at_an_end_between_and_at_a_zero_step_end(tmp_path):
    trainer(tmp_path / "a", config(steps=7)).fit()
    assert [r["step"] for r in records(tmp_path / "a", "validation")] == [3, 6, 7]
    trainer(tmp_path / "b", config(steps=1, val_every=1)).fit()
    assert [r["step"] for r in records(tmp_path / "b", "validation")] == [1]
    trainer(tmp_path / "c", config(steps=100, time_limit=0.0)).fit()
    assert [r["step"] for r in records(tmp_path / "c", "validation")] == [0]
    assert (tmp_path / "c" / MODEL_FILE).exists()
    (tmp_path / "d").mkdir()
    Trainer(build_method(config()), config(), TRAIN, None, tmp_path / "d", progress=False).fit()
    assert (tmp_path / "d" / MODEL_FILE).exists()  # val_every set but no validation set: the final weights


def test_records_and_summary_carry_their_keys_and_the_elapsed_time_in_tenths(tmp_path):
    started = time.perf_counter()
    summary = trainer(tmp_path, config(steps=6)).fit()
    wall = time.perf_counter() - started
    end = records(tmp_path)[-1]
    assert set(summary) == {"step", "steps", "elapsed_s", "best_val_accuracy", "interrupted"}
    assert end == {"event": "end", **summary} and summary["steps"] == 6 and summary["interrupted"] is False
    assert summary["best_val_accuracy"] == max(r["val_accuracy"] for r in records(tmp_path, "validation"))
    for record in records(tmp_path):
        assert set(record) >= {"step", "elapsed_s"}
    for record in records(tmp_path, "validation"):
        assert set(record) == {"event", "step", "val_accuracy", "best", "elapsed_s"}
    timed = [r["elapsed_s"] for r in records(tmp_path)]
    assert all(type(t) is float and 0 <= t <= wall + 0.05 and t == round(t, 1) for t in timed)
    assert summary["elapsed_s"] > 0 or wall < 0.05


def test_the_best_validation_score_keeps_its_weights_when_later_ones_are_worse(tmp_path, monkeypatch):
    scores, weights = iter([0.9, 0.5, 0.4]), []
    def scripted(method, dataset, cfg):
        weights.append({k: v.clone() for k, v in method.state_dict().items()})
        return next(scores)
    monkeypatch.setattr(trainer_module, "validation_accuracy", scripted)
    summary = trainer(tmp_path, config(steps=7)).fit()
    assert summary["best_val_accuracy"] == 0.9
    method = build_method(config())
    load_weights(method, tmp_path / MODEL_FILE, config())
    for name, value in method.state_dict().items():
        assert torch.equal(value, weights[0][name]), name


def test_validation_scores_are_the_evaluators_on_the_configs_episodes_and_seed(capfd):
    cfg = config(seed=5, val_episodes=7)
    method = build_method(cfg)
    assert validation_accuracy(method, VAL, cfg) == evaluate(method, VAL, 3, 1, 3, 7, 5, progress=False).mean
    torch.manual_seed(0)
    mann = MANN(FlattenEncoder(1, 16), memory="lrua", n_classes=2, instances=3, batch_size=4, controller_size=16,
                slots=8, width=8, heads=1, augment=False)
    with torch.no_grad():  # weights large enough that its answers depend on the images, so on the episodes
        for parameter in mann.parameters():
            parameter.normal_(0, 1)
    expected = evaluate_instances(mann, VAL, n_episodes=7, seed=5, progress=False).overall
    capfd.readouterr()
    assert validation_accuracy(mann, VAL, cfg) == expected
    assert capfd.readouterr() == ("", "")  # no progress bar of its own inside the trainer's
    assert expected != evaluate_instances(mann, VAL, n_episodes=7, seed=0, progress=False).overall


def test_a_siamese_model_is_saved_with_the_threshold_of_its_validation_classes(tmp_path):
    cfg = config(method="siamese", steps=4, val_every=2, options={"batch_size": 8}, seed=3)
    summary = trainer(tmp_path, cfg).fit()
    assert summary["best_val_accuracy"] is not None
    saved = build_method(cfg)
    load_weights(saved, tmp_path / MODEL_FILE, cfg)
    threshold = float(saved.threshold)
    saved.calibrate(VAL, seed=3)
    assert float(saved.threshold) == threshold


def test_one_step_on_several_episodes_follows_the_gradient_of_their_mean_loss_and_logs_that_mean(tmp_path):
    cfg = config(steps=1, val_every=0, episodes_per_step=2)
    t = trainer(tmp_path, cfg)
    drawn = []
    real_batches = t.batches
    t.batches = lambda i: drawn.append(i) or real_batches(i)
    reference = build_method(cfg)
    t.fit()
    assert drawn == [0, 1]
    losses = [reference.training_loss(real_batches(i))[0] for i in (0, 1)]
    ((losses[0] + losses[1]) / 2).backward()
    for (name, a), b in zip(reference.named_parameters(), t.method.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-4), name  # the order of sums differs
    logged = records(tmp_path, "train")[0]
    assert logged["loss"] == pytest.approx(float((losses[0] + losses[1]).detach()) / 2, rel=1e-5)


def test_episodes_per_step_draws_each_batch_once_in_order(tmp_path):
    t = trainer(tmp_path, config(steps=3, val_every=0, episodes_per_step=2))
    drawn = []
    real_batches = t.batches
    t.batches = lambda i: drawn.append(i) or real_batches(i)
    t.fit()
    assert drawn == [0, 1, 2, 3, 4, 5]


def test_a_resume_with_other_episodes_per_step_or_processes_is_refused_unless_allowed(tmp_path):
    trainer(tmp_path, config(steps=3, episodes_per_step=2)).fit()
    with pytest.raises(FewShotError) as error:
        trainer(tmp_path, config()).fit(resume=True)
    message = str(error.value)
    assert (f"{tmp_path} was trained by 1 process(es) of 2 episode(s) per step, this run has 1 process(es) of 1: "
            "resume with 1 process(es)" in message and "--episodes-per-step 2, or pass --allow-different-episodes"
            in message and "(the run will then differ from an uninterrupted one)" in message)
    assert str(error.value).endswith("or pass --allow-different-episodes to go on with other episodes (the run will "
                                     "then differ from an uninterrupted one)")
    with pytest.raises(FewShotError, match=r"this run has 1 process\(es\) of 3: resume with 1 process\(es\)"):
        trainer(tmp_path, config(episodes_per_step=3)).fit(resume=True)
    assert trainer(tmp_path, config()).fit(resume=True, allow_different_episodes=True)["step"] == 6
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert state["world_size"] == 1 and state["episodes_per_step"] == 1 and "rng_ranks" not in state
    state["world_size"] = 2
    save_checkpoint(tmp_path / CHECKPOINT_FILE, state)
    with pytest.raises(FewShotError, match=r"trained by 2 process\(es\) of 1 episode\(s\) per step, this run has 1 "
                                           r"process\(es\) of 1: resume with 2 process\(es\)"):
        trainer(tmp_path, config(steps=9)).fit(resume=True)


def test_a_checkpoint_written_before_the_process_counts_were_saved_resumes_as_one_process(tmp_path):
    trainer(tmp_path, config(steps=3)).fit()
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    del state["world_size"], state["episodes_per_step"]
    save_checkpoint(tmp_path / CHECKPOINT_FILE, state)
    assert trainer(tmp_path, config()).fit(resume=True)["step"] == 6


def test_a_cosine_schedule_resumes_only_over_the_same_steps(tmp_path):
    trainer(tmp_path, config(lr_schedule="cosine", steps=3)).fit()
    message = (f"{tmp_path} anneals its learning rate over 3 steps (lr_schedule cosine): resume it with --steps 3, "
               "or start a new run for 6 steps")
    with pytest.raises(FewShotError) as error:
        trainer(tmp_path, config(lr_schedule="cosine", steps=6)).fit(resume=True)
    assert str(error.value) == message
    assert trainer(tmp_path, config(lr_schedule="cosine", steps=3)).fit(resume=True)["step"] == 3


def test_resume_of_a_corrupt_checkpoint_names_the_file(tmp_path):
    trainer(tmp_path, config(steps=3)).fit()
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"damaged")
    with pytest.raises(FewShotError, match=re.escape(f"checkpoint {tmp_path / CHECKPOINT_FILE} cannot be read")):
        trainer(tmp_path, config()).fit(resume=True)


def test_resume_drops_the_records_written_after_the_checkpoint(tmp_path):
    trainer(tmp_path, config(steps=3)).fit()
    with open(tmp_path / METRICS_FILE, "a") as f:  # what a run killed at step 5 wrote after its step-3 checkpoint
        f.write(json.dumps({"event": "train", "step": 5, "loss": 1.0}) + "\n")
        f.write(json.dumps({"event": "validation", "step": 4, "val_accuracy": 0.1}) + "\n")
    trainer(tmp_path, config()).fit(resume=True)
    steps = [(r["event"], r["step"]) for r in records(tmp_path)]
    assert len(steps) == len(set(steps)) and ("validation", 4) not in steps


def test_the_time_limit_counts_minutes_and_the_time_before_a_resume(tmp_path):
    started = time.perf_counter()
    assert trainer(tmp_path, config(steps=6, time_limit=0.5)).fit()["step"] == 6  # 30 s: ample
    wall = time.perf_counter() - started
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert 0 < state["elapsed"] <= wall
    state["elapsed"] = 100.0
    save_checkpoint(tmp_path / CHECKPOINT_FILE, state)
    summary = trainer(tmp_path, config(steps=9)).fit(resume=True)
    assert summary["step"] == 9 and 100.0 <= summary["elapsed_s"] <= 100.0 + wall + 5
    assert trainer(tmp_path, config(steps=12, time_limit=1.0)).fit(resume=True)["step"] == 9  # 100 s > 1 min


def test_a_stop_request_or_ctrl_c_ends_at_a_step_boundary_with_a_checkpoint_and_no_final_validation(tmp_path):
    for name, stop in (("term", lambda t: t.request_stop()), ("int", None)):
        t = trainer(tmp_path / name, config(steps=6, val_every=2))
        real_step = t._train_step
        def step(t=t, stop=stop, real_step=real_step):
            if t.step == 3:
                if stop is None:
                    raise KeyboardInterrupt
                stop(t)
            return real_step()
        t._train_step = step
        saved_at = []
        real_checkpoint = t._checkpoint
        t._checkpoint = lambda t=t, real=real_checkpoint, saved=saved_at: saved.append(t.step) or real()
        summary = t.fit()
        expected = 4 if stop else 3
        assert saved_at == [3, expected]  # every checkpoint_every (3) steps, and where it stopped
        assert records(tmp_path / name, "train")[-1]["step"] == expected  # the steps since the last record
        assert summary["step"] == expected and summary["interrupted"] is True
        assert load_checkpoint(tmp_path / name / CHECKPOINT_FILE)["step"] == expected
        assert [r["step"] for r in records(tmp_path / name, "validation")] == [2, 4][:expected // 2]
        assert math.isfinite(records(tmp_path / name)[-1]["elapsed_s"])
