"""Meta-LSTM: the gradient preprocessing, the update as an LSTM cell, the initial gates, first-order meta-gradients,
learning, test-time adaptation on a copy, saving and loading, and the command line end to end."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from synthetic import make_dataset, write_folder
from training_support import train_briefly

from fewshot.cli.main import main
from fewshot.errors import FewShotError
from fewshot.evaluation import evaluate
from fewshot.methods import METHODS
from fewshot.methods.meta_lstm import MetaLearnerLSTM, MetaLSTM, preprocess
from fewshot.nets import build_encoder
from fewshot.runs import METRICS_FILE, MODEL_FILE, build_method, load_run, load_weights
from fewshot.training.config import RunConfig
from fewshot.training.trainer import Trainer

DATA = make_dataset(n_classes=16, per_class=8, size=16, seed=3)
TRAIN, VAL = DATA.subset(range(10)), DATA.subset(range(10, 16))


def model(**options):
    torch.manual_seed(0)
    values = dict(n_way=4, k_shot=1, n_query=2, inner_steps=2)
    values.update(options)
    return MetaLSTM(build_encoder("conv4", 1, 16, hidden=8), **values)


def episode(data=TRAIN, n_way=4, k_shot=1, n_query=2, i=0):
    return model(n_way=n_way, k_shot=k_shot, n_query=n_query).training_batches(data, 10, seed=1)(i)


def fix_gates(meta, rate):
    """Input gate at ``rate`` and forget gate at 1 whatever the inputs: zero weights, biases logit(rate) and 50."""
    with torch.no_grad():
        meta.input_gate.weight.zero_()
        meta.forget_gate.weight.zero_()
        meta.input_gate.bias.fill_(math.log(rate / (1 - rate)))
        meta.forget_gate.bias.fill_(50.0)  # sigmoid(50) is 1 in float32


def test_preprocessing_matches_the_formula_on_both_branches():
    p = 10.0
    values = [1.0, -0.5, 1e-3, 2e-4, 1e-5, -2e-6, 0.0]
    expected = []
    for x in values:
        if abs(x) >= math.exp(-p):  # e^-10 = 4.54e-5
            expected.append((math.log(abs(x)) / p, math.copysign(1.0, x)))
        else:
            expected.append((-1.0, math.exp(p) * x))
    assert expected[0] == (0.0, 1.0) and expected[-1] == (-1.0, 0.0)
    assert expected[4] == pytest.approx((-1.0, 0.22026466))  # 1e-5 is below e^-10: the second branch
    got = preprocess(torch.tensor(values, dtype=torch.float64), p)
    assert got.shape == (len(values), 2)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64))
    scalar = preprocess(torch.tensor(2.5))  # the loss, a 0-d tensor
    assert torch.allclose(scalar, torch.tensor([math.log(2.5) / 10, 1.0]))


def test_a_fixed_gate_update_is_a_plain_sgd_step():
    meta = MetaLearnerLSTM(hidden_size=5)
    fix_gates(meta, 0.1)
    theta, grad = torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([1.0, 0.25, -3.0, 1e-6])
    updated, state = meta(grad, torch.tensor(0.7), theta, meta.initial_state(theta))
    assert torch.allclose(updated, torch.tensor([0.5 - 0.1, -1.0 - 0.025, 2.0 + 0.3, -1e-7]), atol=1e-6)
    assert torch.allclose(state.input, torch.full((4,), 0.1)) and torch.equal(state.forget, torch.ones(4))


def test_one_update_of_the_learner_equals_sgd_on_its_support_loss():
    method, batch = model(), episode()
    fix_gates(method.meta_learner, 0.05)
    method.train()
    names = [n for n, _ in method.named_parameters() if n.startswith(("encoder.", "head."))]
    params = [method.get_parameter(n) for n in names]
    loss = F.cross_entropy(method(batch.support), batch.support_labels)  # c_0 on the support, batch statistics
    grads = torch.autograd.grad(loss, params)
    adapted = method.adapt(batch.support, batch.support_labels, steps=1)
    assert set(adapted.params) == set(names)
    for name, p, g in zip(names, params, grads):
        assert torch.allclose(adapted.params[name], p - 0.05 * g, atol=1e-6), name
    assert adapted.support_loss.item() == pytest.approx(loss.item(), rel=1e-5)


def test_gate_biases_start_as_the_paper_says():
    torch.manual_seed(3)
    meta = MetaLearnerLSTM(hidden_size=20)
    assert 4.0 <= meta.forget_gate.bias.item() <= 5.0  # f starts near 1
    assert -5.0 <= meta.input_gate.bias.item() <= -4.0  # i starts small
    weights = [p for name, p in meta.named_parameters() if not name.endswith("gate.bias")]
    assert all(p.abs().max() <= 0.01 for p in weights)
    theta, grad = torch.randn(50), torch.randn(50)
    _, state = meta(grad, torch.tensor(1.6), theta, meta.initial_state(theta))
    assert state.forget.min() > 0.98 and state.input.max() < 0.02


def test_meta_gradient_is_first_order():
    """With f = 1 and i = r, c_T = c_0 - r sum_t g_t; the g_t are constants, so d loss / d c_0 = d loss / d c_T."""
    method, batch = model(inner_steps=3), episode()
    fix_gates(method.meta_learner, 0.1)
    method.train()
    adapted = method.adapt(batch.support, batch.support_labels, steps=3)
    final = {n: p.detach().requires_grad_() for n, p in adapted.params.items()}
    query_loss = F.cross_entropy(method.learner(final, adapted.statistics, batch.query), batch.query_labels)
    expected = torch.autograd.grad(query_loss, list(final.values()))
    meta_loss = F.cross_entropy(method.learner(adapted.params, adapted.statistics, batch.query), batch.query_labels)
    got = torch.autograd.grad(meta_loss, [method.get_parameter(n) for n in final])
    for name, e, g in zip(final, expected, got):
        assert torch.allclose(g, e, atol=1e-6), name


def test_training_reaches_every_meta_parameter_and_logs_the_gates():
    method, batch = model(), episode()
    method.train()
    loss, metrics = method.training_loss(batch)
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert set(metrics) == {"accuracy", "support_loss", "input_gate", "forget_gate"}
    assert all(m.dim() == 0 and not m.requires_grad for m in metrics.values())
    assert 0.98 < metrics["forget_gate"] < 1 and 0 < metrics["input_gate"] < 0.02


def test_short_training_beats_chance_and_the_untrained_model_on_unseen_classes(one_thread):
    data = make_dataset(n_classes=24, per_class=10, size=16, seed=1)
    train, test = data.subset(range(16)), data.subset(range(16, 24))
    torch.manual_seed(0)
    method = MetaLSTM(build_encoder("conv4", 1, 16, hidden=32), n_way=4, k_shot=1, n_query=3, inner_steps=5)
    before = evaluate(method, test, n_way=4, k_shot=1, n_query=3, n_episodes=100, progress=False).mean
    train_briefly(method, train, 40)
    after = evaluate(method, test, n_way=4, k_shot=1, n_query=3, n_episodes=100, progress=False).mean
    assert after > 0.5  # chance is 0.25
    assert after > before + 0.1


def test_test_time_updates_a_copy_and_queries_do_not_see_each_other():
    method, batch = model(), episode(VAL)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    method.eval()
    with pytest.raises(RuntimeError, match="set_support"):
        method.classify(batch.query)
    with torch.no_grad():
        method.set_support(batch.support, batch.support_labels)
        scores = method.classify(batch.query)
        alone = method.classify(batch.query[:1])
    assert scores.shape == (8, 4)
    assert torch.allclose(scores[:1], alone, atol=1e-5)  # support statistics, not the query batch's
    with torch.inference_mode():
        method.set_support(batch.support, batch.support_labels)
        again = method.classify(batch.query)
    assert torch.allclose(again, scores, atol=1e-6)
    assert not torch.allclose(scores, method(batch.query))  # the updated learner is not c_0
    result = evaluate(method, VAL, n_way=4, k_shot=1, n_query=2, n_episodes=5, progress=False)
    transductive = evaluate(method, VAL, n_way=4, k_shot=1, n_query=2, n_episodes=5, progress=False,
                            transductive=True)
    assert not result.transductive and transductive.transductive
    after = method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "evaluation changed the saved weights"
    assert not method.training


def test_bad_options_and_episodes_say_what_to_pass():
    encoder = build_encoder("conv4", 1, 16, hidden=8)
    for options, message in (({"inner_steps": 0}, "inner_steps must be a positive integer"),
                             ({"test_inner_steps": 0}, "test_inner_steps must be a positive integer"),
                             ({"hidden_size": 2.5}, "hidden_size must be a positive integer"),
                             ({"bn_momentum": 1.5}, r"bn_momentum must be in \(0, 1\]")):
        with pytest.raises(FewShotError, match=message):
            MetaLSTM(encoder, **options)
    with pytest.raises(FewShotError, match="out_features"):
        MetaLSTM(torch.nn.Identity())
    method, batch = model(), episode(VAL, n_way=3)
    with pytest.raises(FewShotError, match="4-way output layer .* --ways 4"):
        method.set_support(batch.support, batch.support_labels)
    with pytest.raises(FewShotError, match="--no-compile"):
        method.check_compile()
    assert method.gallery_rule is None and "support set" in method.gallery_refusal
    assert METHODS.get("meta_lstm") is MetaLSTM


def test_trainer_validates_and_keeps_the_best_learner_and_meta_learner(tmp_path):
    cfg = RunConfig(method="meta_lstm", image_size=16, steps=4, val_every=2, val_way=4, val_shot=1, val_query=2,
                    val_episodes=4, checkpoint_every=4, grad_clip=0.25, encoder_options={"hidden": 8},
                    options={"n_way": 4, "k_shot": 1, "n_query": 2, "inner_steps": 2})
    method = build_method(cfg)
    initial = {k: v.clone() for k, v in method.state_dict().items()}
    summary = Trainer(method, cfg, TRAIN, VAL, tmp_path, progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "validation"] == [2, 4]
    assert summary["best_val_accuracy"] is not None
    train_record = next(r for r in records if r["event"] == "train")
    assert {"input_gate", "forget_gate", "support_loss"} <= set(train_record)
    saved = load_file(str(tmp_path / MODEL_FILE))
    for key in ("meta_learner.input_gate.bias", "meta_learner.forget_gate.weight", "meta_learner.lstm.weight_ih",
                "head.weight", "encoder.0.0.weight"):
        assert key in saved
        assert not torch.equal(saved[key], initial[key]), f"{key} did not train"
    for key in ("encoder.0.1.running_mean", "encoder.0.1.running_var", "encoder.0.1.num_batches_tracked"):
        assert torch.equal(saved[key], initial[key]), f"{key}: the saved batch-norm buffers are never used"
    restored = build_method(cfg)
    load_weights(restored, tmp_path / MODEL_FILE, cfg)
    assert all(torch.equal(saved[k], v) for k, v in restored.state_dict().items())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(make_dataset(n_classes=14, per_class=6, size=16, seed=5), tmp_path_factory.mktemp("shapes"))


def test_command_line_train_then_evaluate(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    run, config_file = tmp_path / "run", tmp_path / "small.yaml"
    config_file.write_text("method: meta_lstm\nencoder_options:\n  hidden: 8\n")  # the encoder's options have no flag
    assert main(["train", "meta_lstm", "--config", str(config_file), "--dataset", "folder", "--data-dir", str(folder),
                 "--split", "0-7/8-10/11-13", "--image-size", "16", "--steps", "4", "--n-way", "3", "--k-shot", "1",
                 "--n-query", "2", "--inner-steps", "2", "--test-inner-steps", "3", "--hidden-size", "6",
                 "--grad-clip", "0.25", "--val-every", "2", "--val-way", "3", "--val-query", "2",
                 "--val-episodes", "3", "--checkpoint-every", "2", "--out", str(run), "--no-progress"]) == 0
    method, config = load_run(run)
    assert config.options["test_inner_steps"] == 3 and method.test_inner_steps == 3
    saved = load_file(str(run / MODEL_FILE))
    assert saved["meta_learner.lstm.weight_hh"].shape == (24, 6)
    args = ["evaluate", str(run), "--ways", "3", "--shots", "1", "2", "--queries", "2", "--episodes", "6",
            "--no-progress"]
    assert main(args) == 0
    figures = json.loads((run / "evaluation.json").read_text())["folder/0-7/8-10/11-13/test"]
    assert set(figures) == {"3-way 1-shot", "3-way 2-shot"}
    assert main(args) == 0
    again = json.loads((run / "evaluation.json").read_text())["folder/0-7/8-10/11-13/test"]
    assert again["3-way 2-shot"]["mean"] == figures["3-way 2-shot"]["mean"]
    assert main([*args[:-1], "--test-inner-steps", "1", "--no-progress"]) == 0
    fewer = json.loads((run / "evaluation.json").read_text())["folder/0-7/8-10/11-13/test 1 test steps"]
    assert set(fewer) == {"3-way 1-shot", "3-way 2-shot"}
    after = load_file(str(run / MODEL_FILE))
    assert all(torch.equal(saved[k], after[k]) for k in saved)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--ways", "2", "--shots", "1", "--episodes", "2", "--queries", "1",
                 "--no-progress"]) == 2
    assert "--ways 3" in capsys.readouterr().err
