"""MAML and its options (FOMAML, ANIL, Meta-SGD, MAML++): the functional inner loop, second-order meta-gradients,
vmap over tasks, learning, learned rates saved and restored, evaluation on copies, bad options, the command line."""
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from synthetic import make_dataset, write_folder
from training_support import train_briefly

from fewshot.cli.evaluate import set_test_inner_steps
from fewshot.cli.main import main
from fewshot.errors import FewShotError
from fewshot.evaluation import evaluate
from fewshot.methods import METHODS
from fewshot.methods.maml import MAML, Tasks, step_weights
from fewshot.nets import build_encoder
from fewshot.runs import MODEL_FILE, build_method, load_run, load_weights
from fewshot.training.config import RunConfig
from fewshot.training.trainer import Trainer, validation_accuracy

DATA = make_dataset(n_classes=16, per_class=8, size=8, seed=3)
TRAIN, VAL = DATA.subset(range(10)), DATA.subset(range(10, 16))


def tiny(dtype=torch.float32, **options):
    """MAML on 8x8 images: four strided blocks of 3 channels and a 3-way head."""
    torch.manual_seed(0)
    values = dict(n_way=3, k_shot=2, n_query=2)
    values.update(options)
    return MAML(build_encoder("conv4_strided", 1, 8, hidden=3), **values).to(dtype)


def tasks(first=0, count=1, data=TRAIN, dtype=torch.float32):
    """``count`` training episodes of :func:`tiny` from episode ``first`` on, stacked."""
    episodes = [tiny().training_batches(data, 100, seed=1)(first + i) for i in range(count)]
    batch = episodes[0]
    return Tasks(torch.stack([b.support[0] for b in episodes]).to(dtype), batch.support_labels,
                 torch.stack([b.query[0] for b in episodes]).to(dtype), batch.query_labels, first)


def meta_gradient(method, batch):
    method.zero_grad(set_to_none=True)
    method.train()
    method.training_loss(batch)[0].backward()
    return {name: p.grad.clone() for name, p in method.named_parameters()}


def test_the_functional_inner_loop_is_a_hand_written_sgd_step():
    for options in ({}, {"learn_inner_lr": "per-parameter"}, {"adapt": "head"}):
        method, batch = tiny(**options), tasks()
        if method.inner_rates is not None:
            with torch.no_grad():
                for rate in method.inner_rates:
                    rate.uniform_(0.1, 0.5)
        method.train()
        support, labels = batch.support[0], batch.support_labels
        prefix = "head." if options.get("adapt") else ("encoder.", "head.")
        names = [n for n, _ in method.named_parameters() if n.startswith(prefix)]
        params = [method.get_parameter(n) for n in names]
        loss = F.cross_entropy(method(support), labels)  # batch norm in training mode: the support's statistics
        grads = torch.autograd.grad(loss, params)
        inputs, _ = method.episode_inputs(support, batch.query[0])
        adapted, _, support_loss = method.inner_loop(inputs, labels, steps=1)
        assert list(adapted) == names
        for i, (name, p, g) in enumerate(zip(names, params, grads)):
            rate = 0.4 if method.inner_rates is None else method.inner_rates[i]
            assert torch.allclose(adapted[name], p - rate * g, atol=1e-6), (options, name)
        assert support_loss.item() == pytest.approx(loss.item(), rel=1e-5)


def test_second_order_gradients_differ_from_first_order_and_match_finite_differences():
    method = tiny(torch.float64, inner_steps=2, inner_lr=0.3)
    batch = tasks(dtype=torch.float64)
    second = meta_gradient(method, batch)
    method.first_order = True
    first = meta_gradient(method, batch)
    method.first_order = False
    for name in ("encoder.0.0.weight", "encoder.2.1.weight", "head.weight"):
        assert not torch.allclose(first[name], second[name], rtol=1e-3, atol=1e-6), name
    weight = method.get_parameter("encoder.0.0.weight")
    for index in ((0, 0, 1, 1), (2, 0, 0, 2)):
        with torch.no_grad():
            original = weight[index].item()
            losses = []
            for shift in (1e-6, -1e-6):
                weight[index] = original + shift
                losses.append(method.training_loss(batch)[0].item())
            weight[index] = original
        assert second["encoder.0.0.weight"][index].item() == pytest.approx((losses[0] - losses[1]) / 2e-6, rel=1e-6)

    # first order: the meta-gradient is the query loss's gradient at the adapted weights (FOMAML)
    inputs = method.episode_inputs(batch.support[0], batch.query[0])
    adapted, _, _ = method.inner_loop(inputs[0], batch.support_labels, steps=2)
    adapted = {n: p.detach().requires_grad_() for n, p in adapted.items()}
    query_loss = F.cross_entropy(method.learner_scores(adapted, *inputs)[1], batch.query_labels)
    for name, g in zip(adapted, torch.autograd.grad(query_loss, list(adapted.values()))):
        assert torch.allclose(first[name], g, atol=1e-12), name


def test_vmap_over_tasks_equals_the_loop_over_episodes_per_step():
    """One batch of 3 episodes under torch.func.vmap and 3 batches of 1 (the trainer's episodes_per_step) give the
    same meta-gradient, at second order, with learned rates and the multi-step loss."""
    options = dict(inner_steps=2, learn_inner_lr="per-layer-per-step", multi_step_loss=True, msl_anneal_episodes=4)
    one = tiny(torch.float64, **options)
    looped = {name: 0 for name, _ in one.named_parameters()}
    for i in range(3, 6):
        for name, g in meta_gradient(one, tasks(first=i, dtype=torch.float64)).items():
            looped[name] = looped[name] + g / 3
    several = tiny(torch.float64, vmap_tasks=3, **options)
    batched = meta_gradient(several, tasks(first=3, count=3, dtype=torch.float64))
    for name, g in batched.items():
        assert torch.allclose(g, looped[name], atol=1e-12), name
    assert several.training_batches(TRAIN, 10, seed=1)(1).first == 3


def test_multi_step_loss_weights_anneal_towards_the_last_step():
    assert step_weights(4, 0.0) == pytest.approx([0.25] * 4)
    assert step_weights(4, 0.5) == pytest.approx([0.125, 0.125, 0.125, 0.625])
    assert step_weights(4, 1.0) == pytest.approx([0.0075, 0.0075, 0.0075, 0.9775])
    assert sum(step_weights(5, 0.3)) == pytest.approx(1)


@pytest.mark.parametrize("options", [
    {},
    {"first_order": True},
    {"adapt": "head", "inner_steps": 3},
    {"learn_inner_lr": "per-parameter"},
    {"learn_inner_lr": "per-layer-per-step", "inner_steps": 2, "multi_step_loss": True, "msl_anneal_episodes": 40},
], ids=["maml", "fomaml", "anil", "meta-sgd", "maml++"])
def test_each_variant_learns_above_chance_on_held_out_classes(options, one_thread):
    data = make_dataset(n_classes=24, per_class=10, size=16, seed=1)
    train, test = data.subset(range(16)), data.subset(range(16, 24))
    torch.manual_seed(0)
    values = {"n_way": 4, "k_shot": 1, "n_query": 3, "test_inner_steps": 3 if "inner_steps" not in options else None}
    method = MAML(build_encoder("conv4_strided", 1, 16, hidden=16), **{**values, **options})
    before = evaluate(method, test, n_way=4, k_shot=1, n_query=3, n_episodes=60, progress=False).mean
    train_briefly(method, train, 50, lr=0.005)
    after = evaluate(method, test, n_way=4, k_shot=1, n_query=3, n_episodes=60, progress=False).mean
    assert after > 0.4  # chance is 0.25
    assert after > before + 0.05


def test_learned_rates_are_saved_and_restored(tmp_path):
    for learn in ("per-parameter", "per-layer-per-step"):
        cfg = RunConfig(method="maml", encoder="conv4_strided", image_size=8, steps=4, val_every=2, val_way=3,
                        val_shot=1, val_query=2, val_episodes=3, checkpoint_every=4, episodes_per_step=2,
                        encoder_options={"hidden": 3},
                        options={"n_way": 3, "k_shot": 1, "n_query": 2, "inner_steps": 2, "learn_inner_lr": learn})
        method = build_method(cfg)
        initial = {k: v.clone() for k, v in method.state_dict().items()}
        Trainer(method, cfg, TRAIN, VAL, tmp_path / learn, progress=False).fit()
        saved = load_file(str(tmp_path / learn / MODEL_FILE))
        rates = [k for k in saved if k.startswith("inner_rates.")]
        assert len(rates) == len(method.inner_rates) == 18  # 4 blocks x (conv, batch norm) x 2 + the head's 2
        shape = (2,) if learn == "per-layer-per-step" else initial["encoder.0.0.weight"].shape
        assert saved["inner_rates.0"].shape == shape
        assert any(not torch.equal(saved[k], initial[k]) for k in rates), "the rates did not learn"
        restored = build_method(cfg)
        load_weights(restored, tmp_path / learn / MODEL_FILE, cfg)
        assert all(torch.equal(saved[k], v) for k, v in restored.state_dict().items())


def test_evaluation_adapts_a_copy_and_never_changes_the_saved_weights():
    for options in ({}, {"adapt": "head"}):
        method = tiny(**options)
        batch = method.training_batches(VAL, 10, seed=2)(0)
        before = {k: v.clone() for k, v in method.state_dict().items()}
        method.eval()
        with pytest.raises(RuntimeError, match="set_support"):
            method.classify(batch.query[0])
        with torch.no_grad():
            method.set_support(batch.support[0], batch.support_labels)
            scores = method.classify(batch.query[0])
            alone = method.classify(batch.query[0][:1])
        assert scores.shape == (6, 3)
        assert torch.allclose(scores[:1], alone, atol=1e-5)  # the support's statistics, not the query batch's
        with torch.inference_mode():
            method.set_support(batch.support[0], batch.support_labels)
            assert torch.allclose(method.classify(batch.query[0]), scores, atol=1e-6)
        assert not torch.allclose(scores, method(batch.query[0]))  # the adapted weights are not theta
        result = evaluate(method, VAL, n_way=3, k_shot=2, n_query=2, n_episodes=4, progress=False)
        transductive = evaluate(method, VAL, n_way=3, k_shot=2, n_query=2, n_episodes=4, progress=False,
                                transductive=True)
        assert not result.transductive and transductive.transductive and "transductive" in transductive.setting
        assert all(torch.equal(before[k], v) for k, v in method.state_dict().items()), "evaluation changed the weights"
        assert not method.training


def test_test_inner_steps_can_be_changed_after_training():
    batch = tiny().training_batches(VAL, 10, seed=2)(0)

    def scores(method):
        method.eval()
        with torch.no_grad():
            method.set_support(batch.support[0], batch.support_labels)
            return method.classify(batch.query[0])

    changed = tiny(test_inner_steps=1)
    changed.set_test_inner_steps(4)
    assert torch.equal(scores(changed), scores(tiny(test_inner_steps=4)))
    assert not torch.allclose(scores(changed), scores(tiny(test_inner_steps=1)))
    lslr = tiny(inner_steps=2, learn_inner_lr="per-layer-per-step")
    with pytest.raises(FewShotError, match="pass test_inner_steps <= 2"):
        lslr.set_test_inner_steps(3)
    with pytest.raises(FewShotError, match="test_inner_steps must be a positive integer"):
        changed.set_test_inner_steps(0)
    assert lslr.test_inner_steps == 2 and changed.test_inner_steps == 4
    with pytest.raises(FewShotError, match="runs/proto is a protonet run, which takes none: leave it out"):
        set_test_inner_steps(METHODS.get("protonet")(build_encoder("conv4", 1, 16, hidden=3)), 3, "runs/proto")


def test_bad_options_say_what_to_pass():
    encoder = build_encoder("conv4_strided", 1, 8, hidden=3)
    for options, message in (({"inner_steps": 0}, "inner_steps must be a positive integer"),
                             ({"test_inner_steps": 1.5}, "test_inner_steps must be a positive integer"),
                             ({"vmap_tasks": 0}, "vmap_tasks must be a positive integer"),
                             ({"inner_lr": -0.1}, "inner_lr must be a positive number"),
                             ({"adapt": "body"}, "adapt must be all .MAML. or head .ANIL."),
                             ({"learn_inner_lr": "scalar"}, "none, per-layer-per-step .MAML\\+\\+. or per-parameter"),
                             ({"learn_inner_lr": "per-layer-per-step", "test_inner_steps": 3},
                              "pass test_inner_steps <= 1"),
                             ({"multi_step_loss": True}, "pass inner_steps > 1")):
        with pytest.raises(FewShotError, match=message):
            MAML(encoder, **options)
    with pytest.raises(FewShotError, match="--encoder conv4_strided"):
        MAML(torch.nn.Identity())
    method = tiny()
    batch = method.training_batches(VAL, 10, seed=2)(0)
    with pytest.raises(FewShotError, match="3-way output layer .* --ways 3"):
        method.set_support(batch.support[0][:4], batch.support_labels[:4])
    with pytest.raises(FewShotError, match="--no-compile"):
        method.check_compile()
    assert method.gallery_rule is None and "support set" in method.gallery_refusal
    assert METHODS.get("maml") is MAML and MAML.default_encoder == "conv4_strided"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(make_dataset(n_classes=14, per_class=6, size=16, seed=5), tmp_path_factory.mktemp("shapes"))


def test_command_line_train_then_evaluate(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "maml", "--dataset", "folder", "--data-dir", str(folder), "--split", "0-7/8-10/11-13",
                 "--image-size", "16", "--steps", "4", "--n-way", "3", "--k-shot", "1", "--n-query", "1",
                 "--inner-steps", "1", "--test-inner-steps", "2", "--learn-inner-lr", "per-parameter",
                 "--vmap-tasks", "2", "--episodes-per-step", "2", "--lr-schedule", "cosine", "--val-every", "2",
                 "--val-way", "3", "--val-query", "2", "--val-episodes", "3", "--checkpoint-every", "2",
                 "--out", str(run), "--no-progress"]) == 0
    method, config = load_run(run)
    assert config.encoder == "conv4_strided" and config.lr_schedule == "cosine"
    assert method.test_inner_steps == 2 and method.vmap_tasks == 2
    saved = load_file(str(run / MODEL_FILE))
    assert main(["evaluate", str(run), "--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "4",
                 "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "4",
                 "--transductive-batch-norm", "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "4",
                 "--test-inner-steps", "5", "--no-progress"]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    figures = evaluation["folder/0-7/8-10/11-13/test"]
    assert set(figures) == {"3-way 1-shot", "3-way 1-shot transductive"}
    assert set(evaluation["folder/0-7/8-10/11-13/test 5 test steps"]) == {"3-way 1-shot"}
    after = load_file(str(run / MODEL_FILE))
    assert all(torch.equal(saved[k], after[k]) for k in saved)


def test_validation_on_the_transductive_rule_scores_what_the_transductive_test_scores():
    """``val_transductive``: the trainer validates as ``evaluate --transductive-batch-norm`` tests, so a model
    trained with ``--transductive`` is chosen by the rule it is tested by."""
    method = tiny(transductive=True)
    config = RunConfig(method="maml", val_way=3, val_shot=2, val_query=2, val_episodes=6, val_transductive=True)
    scored = validation_accuracy(method, VAL, config)
    plain = evaluate(method, VAL, n_way=3, k_shot=2, n_query=2, n_episodes=6, progress=False).mean
    transductive = evaluate(method, VAL, n_way=3, k_shot=2, n_query=2, n_episodes=6, progress=False,
                            transductive=True).mean
    assert scored == transductive
    assert validation_accuracy(method, VAL, RunConfig(method="maml", val_way=3, val_shot=2, val_query=2,
                                                      val_episodes=6)) == plain
    assert plain != transductive


def test_transductive_validation_is_refused_for_a_method_without_batch_norm(tmp_path):
    config = RunConfig(method="protonet", encoder="flatten", image_size=8, val_way=3, val_query=3, val_transductive=True,
                       options=dict(n_way=3, k_shot=1, n_query=2))
    with pytest.raises(FewShotError, match="has no batch norm .* drop --val-transductive"):
        Trainer(build_method(config, (1, 8, 8)), config, TRAIN, VAL, tmp_path, progress=False)
