"""The cosine learning-rate schedule: its values, a resumed run that ends where an uninterrupted one does, and the
refusal to resume it over another number of steps."""
import math

import pytest
import torch
from synthetic import make_dataset

from fewshot.errors import FewShotError
from fewshot.runs import build_method
from fewshot.training.config import RunConfig
from fewshot.training.trainer import Trainer, make_scheduler

TRAIN = make_dataset(n_classes=8, per_class=6, size=16, seed=2)
LR, STEPS = 0.01, 6


def config(**values):
    fields = dict(method="protonet", image_size=16, steps=STEPS, lr=LR, lr_schedule="cosine", val_every=0,
                  checkpoint_every=3, encoder_options={"hidden": 8}, options={"n_way": 3, "k_shot": 1, "n_query": 2})
    fields.update(values)
    return RunConfig.from_dict(fields)


def test_cosine_anneals_from_lr_to_zero_over_the_steps():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = make_scheduler(optimizer, config(steps=10))
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([LR * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)
    assert isinstance(make_scheduler(optimizer, config(lr_schedule="step")), torch.optim.lr_scheduler.StepLR)
    with pytest.raises(FewShotError, match="lr_schedule must be step or cosine"):
        config(lr_schedule="linear")


def test_a_resumed_cosine_run_ends_as_an_uninterrupted_one(tmp_path):
    cfg = config()
    full = Trainer(build_method(cfg), cfg, TRAIN, None, tmp_path / "full", progress=False)
    full.fit()

    stopped = Trainer(build_method(cfg), cfg, TRAIN, None, tmp_path / "resumed", progress=False)
    step = stopped._train_step

    def stop_after_three() -> dict[str, float]:
        metrics = step()
        if stopped.step == 2:  # the loop counts this step next, then stops
            stopped.request_stop()
        return metrics

    stopped._train_step = stop_after_three
    assert stopped.fit()["step"] == 3
    with pytest.raises(FewShotError, match="over 6 steps .* --steps 6"):
        Trainer(build_method(cfg), config(steps=8), TRAIN, None, tmp_path / "resumed", progress=False).fit(resume=True)
    resumed = Trainer(build_method(cfg), cfg, TRAIN, None, tmp_path / "resumed", progress=False)
    assert resumed.fit(resume=True)["step"] == STEPS
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"] == pytest.approx(0)
    for (name, a), b in zip(full.method.state_dict().items(), resumed.method.state_dict().values()):
        assert torch.equal(a, b), name
