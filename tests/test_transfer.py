"""The transfer baseline (Chen et al. 2019): heads, fitting a head per episode, learning, options, the CLI."""
import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from synthetic import make_dataset
from training_support import train_briefly

from fewshot.cli.main import main
from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import evaluate
from fewshot.methods.base import class_means
from fewshot.methods.transfer import (MOMENTUM, WEIGHT_DECAY, CosineHead, TransferBaseline, default_scale,
                                      fit_cosine_head, fit_linear_head)
from fewshot.nets import build_encoder
from fewshot.runs import build_method, load_run
from fewshot.training.config import resolve_config


def transfer(**options):
    torch.manual_seed(0)
    return TransferBaseline(build_encoder("conv4", 1, 16), **options)


@pytest.fixture(scope="module")
def classes():
    data = make_dataset(n_classes=16, per_class=12, size=16, seed=1)
    return data.subset(list(range(10)), "train"), data.subset(list(range(10, 16)), "test")


@pytest.mark.parametrize("head", ["cosine", "linear"])
def test_learns_above_chance_on_held_out_classes(classes, head):
    train, test = classes
    model = transfer(head=head, n_classes=10, classes_per_batch=10, images_per_class=4)
    losses = train_briefly(model, train, 25)
    assert sum(losses[-5:]) < sum(losses[:5])
    for classifier in ("nearest_mean", "fit_head"):
        model.classifier = classifier
        result = evaluate(model, test, n_way=5, k_shot=1, n_query=5, n_episodes=60, progress=False)
        assert result.mean > 0.6, (classifier, result)  # chance is 0.2


def test_cosine_head_class_wise_weight_norm():
    torch.manual_seed(0)
    head = CosineHead(8, 5, scale=10.0)
    assert torch.allclose(head.gain, head.direction.norm(dim=1))  # weight normalisation starts at g = ||v||
    with torch.no_grad():
        head.gain.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0]))
    assert torch.allclose(head.weight().norm(dim=1), head.gain)
    x = torch.randn(7, 8)
    logits = head(x)
    assert torch.allclose(head(3.0 * x), logits, atol=1e-5)  # the features' norm does not count
    with torch.no_grad():
        head.direction.mul_(torch.tensor([[2.0], [0.1], [5.0], [1.0], [7.0]]))
    assert torch.allclose(head(x), logits, atol=1e-5)  # nor the directions' norm: only the gains
    assert (logits.abs() <= 10.0 * head.gain + 1e-5).all()
    weight = head.gain[:, None] * F.normalize(head.direction, dim=1)
    assert torch.allclose(logits, 10.0 * F.normalize(x, dim=1) @ weight.T, atol=1e-5)
    assert default_scale(200) == 2.0 and default_scale(201) == 10.0
    assert transfer(n_classes=3252).classifier_head.scale == 10.0
    assert transfer(n_classes=3252, scale=4.0).classifier_head.scale == 4.0


def episodes(n_episodes=6, n_way=4, k_shot=3, n_query=5, d=16):
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(n_episodes, n_way, 1, d, generator=g)
    support = F.normalize(centres + 0.6 * torch.randn(n_episodes, n_way, k_shot, d, generator=g), dim=-1)
    query = F.normalize(centres + 0.6 * torch.randn(n_episodes, n_way, n_query, d, generator=g), dim=-1)
    labels = torch.arange(n_way).repeat_interleave(k_shot)
    return support.flatten(1, 2), labels, query.flatten(1, 2), n_way


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_fit_head_over_a_batch_of_episodes_equals_each_episode_alone(head):
    model = transfer(head=head, classifier="fit_head", head_steps=30)
    support, labels, query, n_way = episodes()
    batched = model.scores(support, labels, query, n_way)
    alone = torch.stack([model.scores(s, labels, q, n_way) for s, q in zip(support, query)])
    assert batched.shape == (6, 20, 4)
    assert torch.allclose(batched, alone, atol=1e-4)


def test_fit_head_steps_are_gradient_steps_on_the_cross_entropy():
    support, labels, _, n_way = episodes(n_episodes=1)
    support = support[0]
    lr = 0.3
    means = class_means(support, labels, n_way)
    weight, bias = means.clone().requires_grad_(), (-0.5 * means.pow(2).sum(-1)).requires_grad_()
    F.cross_entropy(support @ weight.T + bias, labels).backward()
    fitted = fit_linear_head(support, labels, n_way, steps=1, lr=lr)
    for start, grad, new in zip((weight, bias), (weight.grad, bias.grad), fitted):
        assert torch.allclose(new, start.detach() - lr * (grad + WEIGHT_DECAY * start.detach()), atol=1e-5)

    scale, unit = 2.0, F.normalize(means, dim=-1)
    u, gain = unit.clone().requires_grad_(), torch.ones(n_way, requires_grad=True)
    F.cross_entropy(scale * gain * (support @ u.T), labels).backward()
    tangent = u.grad - unit * (unit * u.grad).sum(-1, keepdim=True)
    new_unit, new_gain = fit_cosine_head(support, labels, n_way, steps=1, lr=lr, scale=scale)
    assert torch.allclose(new_unit, F.normalize(unit - lr * (tangent + WEIGHT_DECAY * unit), dim=-1), atol=1e-5)
    assert torch.allclose(new_gain, 1 - lr * (gain.grad + WEIGHT_DECAY), atol=1e-5)
    assert 0 < MOMENTUM < 1


def test_fit_head_starts_at_the_nearest_mean_and_fits_the_support():
    support, labels, query, n_way = episodes()
    nearest = transfer().scores(support, labels, query, n_way)
    start = transfer(classifier="fit_head", head_steps=0).scores(support, labels, query, n_way)
    assert torch.equal(start.argmax(-1), nearest.argmax(-1))
    linear = transfer(head="linear", classifier="fit_head", head_steps=0).scores(support, labels, query, n_way)
    distances = torch.cdist(query, class_means(support, labels, n_way)).pow(2)
    assert torch.allclose(linear - 0.5 * query.pow(2).sum(-1, keepdim=True), -0.5 * distances, atol=1e-5)
    for head in ("linear", "cosine"):
        fitted = transfer(head=head, classifier="fit_head", head_steps=200)
        on_support = fitted.scores(support, labels, support, n_way)
        assert (on_support.argmax(-1) == labels).all()
        loss = F.cross_entropy(on_support.flatten(0, 1), labels.repeat(len(support)))
        before = transfer(head=head, classifier="fit_head", head_steps=0).scores(support, labels, support, n_way)
        assert loss < F.cross_entropy(before.flatten(0, 1), labels.repeat(len(support)))


def test_only_nearest_mean_serves_a_gallery():
    assert transfer().gallery_rule == "prototype"
    fit = transfer(classifier="fit_head")
    assert fit.gallery_rule is None and "nearest_mean" in fit.gallery_refusal


@pytest.mark.parametrize("options, message", [
    ({"head": "softmax"}, "pass --head linear"),
    ({"classifier": "knn"}, "pass --classifier nearest_mean or fit_head"),
    ({"n_classes": 1}, "pass --n-classes"),
    ({"scale": -1.0}, "scale must be a positive number"),
    ({"head_steps": -1}, "head_steps must be >= 0"),
    ({"head_lr": 0.0}, "head_lr positive"),
])
def test_bad_options_say_what_to_pass(options, message):
    with pytest.raises(FewShotError, match=message):
        transfer(**options)


def test_a_head_smaller_than_the_training_classes_names_the_count(classes):
    with pytest.raises(FewShotError, match="pass --n-classes 10"):
        transfer(n_classes=8).training_batches(classes[0], 10, 0)
    with pytest.raises(FewShotError, match="out_features"):
        TransferBaseline(torch.nn.Flatten())


def test_train_save_load_and_evaluate_with_refinement_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    data = make_dataset(n_classes=12, per_class=6, size=16, seed=5)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = tmp_path / "data" / f"class{int(label):02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).resize((24, 24)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "transfer", "--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--split",
                 "0-5/6-7/8-11", "--image-size", "16", "--steps", "4", "--n-classes", "6",
                 "--classes-per-batch", "3", "--images-per-class", "2", "--val-every", "2", "--val-way", "2",
                 "--val-query", "2", "--val-episodes", "5", "--out", str(run), "--no-progress"]) == 0
    model, config = load_run(run)
    assert isinstance(model, TransferBaseline) and config.options["n_classes"] == 6
    assert main(["evaluate", str(run), "--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "10",
                 "--refine", "2", "--no-progress"]) == 0
    assert "3-way 1-shot refined 2 steps" in capsys.readouterr().out
    saved = json.loads((run / "evaluation.json").read_text())
    result = saved["folder/0-5/6-7/8-11/test"]["3-way 1-shot refined 2 steps"]
    assert result["refine"] == 2 and 0 <= result["mean"] <= 1


@pytest.mark.parametrize("split, n_classes", [("lake", 3252), ("vinyals", 4112)])
def test_omniglot_configs_build_baseline_plus_plus(split, n_classes):
    model = build_method(resolve_config("transfer", overrides={"dataset": "omniglot", "split": split}))
    assert model.head == "cosine" and model.n_classes == n_classes and model.classifier_head.scale == 10.0
