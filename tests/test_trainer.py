import json

import pytest
import torch
from synthetic import make_dataset

from fewshot.errors import FewShotError
from fewshot.runs import CHECKPOINT_FILE, METRICS_FILE, MODEL_FILE, build_method, load_weights
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.config import RunConfig
from fewshot.training.trainer import Trainer, WeightAverage

DATA = make_dataset(n_classes=16, per_class=8, size=16, seed=2)
TRAIN, VAL = DATA.subset(range(10)), DATA.subset(range(10, 16))


def config(**changes):
    values = dict(image_size=16, steps=6, val_every=3, val_episodes=20, val_way=3, val_query=3, checkpoint_every=3,
                  options=dict(n_way=5, k_shot=1, n_query=2))
    values.update(changes)
    return RunConfig(**values)


def train(run_dir, cfg, resume=False):
    method = build_method(cfg)
    summary = Trainer(method, cfg, TRAIN, VAL, run_dir, progress=False).fit(resume=resume)
    return method, summary


def records(run_dir):
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    full, _ = train(tmp_path / "full", config())
    (tmp_path / "part").mkdir()
    train(tmp_path / "part", config(steps=3))            # the run "killed" after its step-3 checkpoint
    resumed, summary = train(tmp_path / "part", config(), resume=True)
    assert summary["step"] == 6
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    def validations(run):
        return [(r["step"], r["val_accuracy"]) for r in records(run) if r["event"] == "validation"]

    assert validations(tmp_path / "full") == validations(tmp_path / "part")
    assert [r["event"] for r in records(tmp_path / "part")].count("end") == 1


def test_run_directory_holds_weights_checkpoint_and_log(tmp_path):
    cfg = config()
    train(tmp_path, cfg)
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert state["step"] == 6 and set(state) >= {"model", "optimizer", "scheduler", "rng", "best"}
    events = [r["event"] for r in records(tmp_path)]
    assert events.count("validation") == 2 and events[-1] == "end"
    method = build_method(cfg)
    load_weights(method, tmp_path / MODEL_FILE, cfg)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_learning_rate_decays_in_steps(tmp_path):
    train(tmp_path, config(lr_step=2, lr_gamma=0.5, steps=10, val_every=0))
    lr = {r["step"]: r["lr"] for r in records(tmp_path) if r["event"] == "train"}
    assert lr[10] == pytest.approx(1e-3 * 0.5 ** 5)


def test_weight_average_is_an_exponential_moving_average_with_warm_up():
    method = build_method(config())  # conv4: parameters, float buffers and an integer step count
    average = WeightAverage(method, decay=0.9)
    first = {k: v.clone() for k, v in method.state_dict().items()}
    with torch.no_grad():
        for value in method.state_dict().values():
            value.add_(1)
    average.update(step=100)  # decay min(0.9, 101 / 110) = 0.9
    for name, value in average.method.state_dict().items():
        expected = first[name] + 1 if not value.is_floating_point() else first[name] + 0.1
        assert torch.allclose(value, expected), name
    average.update(step=0)  # warm-up: decay 1 / 10, so the average moves 90% of the way
    weight = next(n for n in first if n.endswith("weight"))
    assert torch.allclose(average.method.state_dict()[weight], first[weight] + 0.1 + 0.9 * 0.9)


def test_ema_decay_saves_the_average_and_resumes_it_exactly(tmp_path):
    cfg = dict(val_every=0, ema_decay=0.8)
    full, _ = train(tmp_path / "full", config(**cfg))
    state = load_checkpoint(tmp_path / "full" / CHECKPOINT_FILE)
    saved = build_method(config(**cfg))
    load_weights(saved, tmp_path / "full" / MODEL_FILE, config(**cfg))
    for name, value in saved.state_dict().items():
        assert torch.equal(value, state["average"][name]), name
    assert any(not torch.equal(state["average"][n], v) for n, v in full.state_dict().items())
    (tmp_path / "part").mkdir()
    train(tmp_path / "part", config(**cfg, steps=3))
    train(tmp_path / "part", config(**cfg), resume=True)
    resumed = load_checkpoint(tmp_path / "part" / CHECKPOINT_FILE)["average"]
    for name, value in state["average"].items():
        assert torch.allclose(value.float(), resumed[name].float(), atol=1e-6), name


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_impossible_ema_decay_is_refused(decay):
    with pytest.raises(FewShotError, match="ema_decay must be between 0 and 1"):
        RunConfig.from_dict({"ema_decay": decay})


def test_time_limit_stops_training_and_leaves_a_resumable_checkpoint(tmp_path):
    _, summary = train(tmp_path, config(steps=1000, time_limit=0.0))
    assert summary["step"] == 0
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 0


def test_weights_of_another_configuration_are_refused(tmp_path):
    train(tmp_path, config(steps=1, val_every=0))
    other = config(encoder_options={"hidden": 32})
    with pytest.raises(FewShotError, match="does not fit method 'protonet'.*wrong shape"):
        load_weights(build_method(other), tmp_path / MODEL_FILE, other)


def test_corrupt_checkpoint_gives_one_clear_error(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(FewShotError, match="cannot be read.*--overwrite"):
        load_checkpoint(tmp_path / CHECKPOINT_FILE)
    with pytest.raises(FewShotError, match="nothing to resume"):
        load_checkpoint(tmp_path / "missing.pt")


def test_impossible_validation_episodes_fail_before_training(tmp_path):
    with pytest.raises(FewShotError, match="need 16 images per class"):
        Trainer(build_method(config()), config(val_query=15), TRAIN, VAL, tmp_path, progress=False)


def test_compiled_training_takes_the_same_steps_as_eager(tmp_path):
    """``compile: true`` fuses kernels (float rounding may differ), not what is learned; here on a MANN,
    the method it speeds up (a Python loop over time steps)."""
    mann = dict(method="mann", encoder="flatten", val_every=0, grad_clip=10.0, options=dict(
        n_classes=3, instances=2, batch_size=2, controller_size=8, slots=8, width=4, heads=2))
    eager, _ = train(tmp_path / "eager", config(**mann))
    compiled, _ = train(tmp_path / "compiled", config(**mann, compile=True))
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), name
    logs = [[r for r in records(tmp_path / run) if r["event"] == "train"] for run in ("eager", "compiled")]
    assert [r["loss"] for r in logs[1]] == pytest.approx([r["loss"] for r in logs[0]], rel=1e-4)
    assert {"acc_inst1", "acc_inst2"} <= set(logs[1][0])  # the method's other metrics are logged too


def test_compile_is_refused_for_episodes_of_varying_length(tmp_path):
    """With ``min_classes`` a MANN's episodes change length from batch to batch: one compile each."""
    mann = dict(method="mann", encoder="flatten", val_every=0, options=dict(
        n_classes=3, instances=2, batch_size=2, controller_size=8, slots=8, width=4, heads=2, min_classes=2))
    with pytest.raises(FewShotError, match="min_classes=2 trains on episodes of 2 to 3 classes.*--no-compile"):
        Trainer(build_method(config(**mann)), config(**mann, compile=True), TRAIN, None, tmp_path, progress=False)
    Trainer(build_method(config(**mann)), config(**mann), TRAIN, None, tmp_path, progress=False)  # eager is fine
