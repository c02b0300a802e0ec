import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from synthetic import make_dataset

from fewshot.cli.main import main
from fewshot.cli.verify import load_image
from fewshot.data.pairs import PairBatch, hardest_negatives
from fewshot.errors import FewShotError
from fewshot.evaluation import evaluate
from fewshot.losses import ContrastiveLoss, contrastive_loss
from fewshot.methods.mann import MANN
from fewshot.methods.siamese import VARIANTS, SiameseNetwork
from fewshot.nets import build_encoder
from fewshot.runs import load_run
from fewshot.training.config import RunConfig
from fewshot.training.trainer import validation_accuracy


class Pixels(torch.nn.Flatten):
    """A parameter-free tower: the image's pixels."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_features = features


def pairs(left, right, labels):
    n = len(left)
    return PairBatch(torch.cat([left, right]), torch.arange(n), torch.arange(n, 2 * n), labels)


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("encoder", ["dense", "conv4"])
def test_variants_forward_shapes_and_parameter_counts(encoder):
    images = torch.rand(6, 1, 28, 28)
    counts = {}
    for variant in VARIANTS:
        torch.manual_seed(0)
        model = SiameseNetwork(build_encoder(encoder, 1, 28), variant=variant)
        assert model.pair_scores(images, images.flip(0)).shape == (6,)
        d = model.encoder.out_features
        support, query = torch.randn(4, 10, d), torch.randn(4, 7, d)  # 4 episodes at once
        assert model.scores(support, torch.arange(5).repeat(2), query, 5).shape == (4, 7, 5)
        counts[variant] = count(model)
    tower = count(build_encoder(encoder, 1, 28))
    d = build_encoder(encoder, 1, 28).out_features
    assert counts["unshared-concat"] == 2 * tower + 2 * d + 1  # two towers, one dense unit on [h1; h2]
    assert counts["shared-concat"] == tower + 2 * d + 1  # half the towers' parameters
    assert counts["euclidean-contrastive"] == tower
    assert counts["koch-l1"] == tower + d + 1
    if encoder == "dense":
        assert (counts["unshared-concat"], counts["shared-concat"]) == (201_217, 100_737)  # the seed's summaries


def test_unshared_towers_start_different_and_take_query_then_support():
    torch.manual_seed(0)
    model = SiameseNetwork(build_encoder("dense", 1, 8), variant="unshared-concat").eval()
    assert not torch.equal(model.encoder[1].weight, model.support_encoder[1].weight)
    q, s = torch.rand(3, 1, 8, 8), torch.rand(2, 1, 8, 8)
    pairs = model.head.pairwise(model.encoder(q).repeat_interleave(2, 0), model.support_encoder(s).repeat(3, 1))
    model.set_support(s, torch.tensor([0, 1]))
    assert torch.allclose(model.classify(q), pairs.view(3, 2), atol=1e-6)
    expected = model.head.pairwise(model.encoder(q[:2]), model.support_encoder(s))
    assert torch.allclose(model.pair_scores(q[:2], s), expected)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_all_against_all_scores_match_pair_scores_and_average_shots(variant):
    torch.manual_seed(1)
    model = SiameseNetwork(Pixels(5), variant=variant)
    query, support = torch.randn(2, 3, 5), torch.randn(2, 4, 5)  # 2 episodes, 2-way 2-shot
    labels = torch.tensor([0, 1, 0, 1])
    scores = model.scores(support, labels, query, 2)
    for e in range(2):
        for i in range(3):
            per_support = model.head.pairwise(query[e, i].expand(4, 5), support[e])
            expected = torch.stack([per_support[labels == c].mean() for c in range(2)])
            assert torch.allclose(scores[e, i], expected, atol=1e-5)


@pytest.mark.parametrize("variant", ["unshared-concat", "shared-concat"])
def test_concatenation_heads_rank_classes_the_same_for_every_query(variant):
    """The logit w1 . h(q) + w2 . h(s) + c is additive, so the ranking of classes ignores the query."""
    torch.manual_seed(2)
    model = SiameseNetwork(build_encoder("dense", 1, 8), variant=variant).eval()
    model.set_support(torch.rand(3, 1, 8, 8), torch.arange(3))
    predictions = model.classify(torch.rand(20, 1, 8, 8)).argmax(-1)
    assert (predictions == predictions[0]).all()


def test_contrastive_loss_by_hand():
    d, y = torch.tensor([0.5, 0.3, 1.5, 0.0]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    # y d^2 + (1 - y) max(m - d, 0)^2 with m = 1: 0.25, 0.49, 0, 0
    assert contrastive_loss(d, y, margin=1.0).item() == pytest.approx((0.25 + 0.49) / 4)
    a, b = torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[3.0, 4.0], [1.0, 1.0]])  # d = 5, 0
    assert ContrastiveLoss(margin=6.0)(a, b, torch.tensor([0.0, 0.0])).item() == pytest.approx((1 + 36) / 2)
    right = b.clone().requires_grad_()
    loss = ContrastiveLoss()(a, right, torch.tensor([1.0, 1.0]))  # (5^2 + 0^2) / 2
    loss.backward()  # zero distance: finite gradient (Euclidean distance floored at eps)
    assert loss.item() == pytest.approx(12.5)
    assert torch.allclose(right.grad, torch.tensor([[3.0, 4.0], [0.0, 0.0]]))  # d(d^2 / 2)/db = b - a, 0 at d = 0
    model = SiameseNetwork(Pixels(2), variant="euclidean-contrastive", margin=6.0)
    batch = pairs(a, b, torch.tensor([0.0, 0.0]))
    assert model.training_loss(batch)[0].item() == pytest.approx(18.5)


def test_koch_binary_cross_entropy_by_hand():
    model = SiameseNetwork(Pixels(2), variant="koch-l1")
    with torch.no_grad():
        model.head.dense.weight.copy_(torch.tensor([[-1.0, -2.0]]))
        model.head.dense.bias.fill_(1.5)
    left, right = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.5]])
    # logits: 1.5 - 1 - 2 = -1.5 (label 0), 1.5 - 0 - 1 = 0.5 (label 1)
    expected = (-math.log(1 - 1 / (1 + math.exp(1.5))) - math.log(1 / (1 + math.exp(-0.5)))) / 2
    loss, metrics = model.training_loss(pairs(left, right, torch.tensor([0.0, 1.0])))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["accuracy"] == 1.0
    concat = SiameseNetwork(Pixels(2), variant="shared-concat")
    with torch.no_grad():
        concat.head.dense.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, -1.0]]))
        concat.head.dense.bias.zero_()
    logits = concat.pair_scores(left, right)  # x1[0] - x2[1]: -1, 0.5
    assert torch.allclose(logits, torch.tensor([-1.0, 0.5]))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_few_steps_on_tiny_data_lower_the_loss(variant):
    data = make_dataset(n_classes=6, per_class=6, size=12, seed=4)
    torch.manual_seed(0)
    model = SiameseNetwork(build_encoder("dense", 1, 12, hidden=32), variant=variant, batch_size=32)
    batch = model.training_batches(data, 1, seed=0)(0)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    first = model.training_loss(batch)[0].item()
    for _ in range(25):
        loss, _ = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.training_loss(batch)[0].item() < 0.7 * first


@pytest.mark.parametrize("variant, pairing", [("koch-l1", "koch"), ("euclidean-contrastive", "koch"),
                                              ("koch-l1", "all")])
def test_short_training_beats_chance_one_shot_on_held_out_classes(variant, pairing):
    data = make_dataset(n_classes=20, per_class=10, size=16, seed=1)
    train, test = data.subset(range(14)), data.subset(range(14, 20))
    torch.manual_seed(0)
    model = SiameseNetwork(build_encoder("dense", 1, 16), variant=variant, batch_size=32, pairing=pairing,
                           classes_per_batch=6, images_per_class=4)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    batches = model.training_batches(train, 60, seed=0)
    for step in range(60):
        loss, _ = model.training_loss(batches(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = evaluate(model, test, n_way=4, k_shot=1, n_query=5, n_episodes=100, progress=False).mean
    assert accuracy > 0.5  # chance is 0.25


@pytest.mark.parametrize("pairing", ["koch", "all"])
def test_single_class_training_set_fails_clearly(pairing):
    model = SiameseNetwork(Pixels(16), pairing=pairing, classes_per_batch=2, images_per_class=2)
    with pytest.raises(FewShotError, match="single class, so no different-class \\(negative\\) pairs"):
        model.training_batches(make_dataset(n_classes=1, per_class=5, size=4), 10, seed=0)


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(FewShotError, match="unshared-concat, shared-concat, euclidean-contrastive, koch-l1"):
        SiameseNetwork(Pixels(4), variant="koch")
    with pytest.raises(FewShotError, match="unknown siamese pairing 'pairs'; valid: koch, all"):
        SiameseNetwork(Pixels(4), pairing="pairs")


@pytest.mark.parametrize("pairing", ["koch", "all"])
def test_thicken_adds_ink_to_training_images_and_is_validated(pairing):
    data = make_dataset(n_classes=6, per_class=6, size=12, seed=3)
    def batch(thicken):
        model = SiameseNetwork(Pixels(144), pairing=pairing, batch_size=32, thicken=thicken,
                               classes_per_batch=4, images_per_class=3)
        return model.training_batches(data, 1, seed=0)(0)
    plain, thick = batch(0.0), batch(1.0)
    assert (thick.images >= plain.images).all() and thick.images.sum() > 1.2 * plain.images.sum()
    with pytest.raises(FewShotError, match="thicken is a probability: pass a value in \\[0, 1\\], got 2"):
        SiameseNetwork(Pixels(4), thicken=2)


def test_hard_negatives_train_on_same_pairs_and_one_different_pair_per_image():
    data = make_dataset(n_classes=6, per_class=6, size=8, seed=2)
    model = SiameseNetwork(Pixels(64), variant="koch-l1", pairing="all", classes_per_batch=4, images_per_class=3,
                           hard_negatives=True)
    batch = model.training_batches(data, 1, seed=0)(0)
    with torch.no_grad():
        model.head.dense.weight.fill_(-0.01)
        model.head.dense.bias.fill_(1.0)
    scores = model.pair_scores(batch.images[batch.left], batch.images[batch.right])
    keep = hardest_negatives(scores, batch)
    assert 6 <= int(keep.sum()) <= 12  # one per image of 12, shared by two images when mutual
    bce = F.binary_cross_entropy_with_logits(scores, batch.labels, reduction="none")
    same = batch.labels > 0.5
    loss, _ = model.training_loss(batch)
    assert loss.item() == pytest.approx(0.5 * (bce[same].mean() + bce[keep].mean()).item(), rel=1e-5)
    model.hard_negatives = False
    assert loss.item() > model.training_loss(batch)[0].item()  # the hardest different pairs cost the most


def test_all_pairs_loss_weighs_the_few_same_pairs_as_much_as_the_many_different_ones():
    data = make_dataset(n_classes=6, per_class=6, size=8, seed=2)
    model = SiameseNetwork(Pixels(64), variant="koch-l1", pairing="all", classes_per_batch=4, images_per_class=3)
    batch = model.training_batches(data, 1, seed=0)(0)
    assert len(batch) == 66 and int(batch.labels.sum()) == 12
    with torch.no_grad():
        model.head.dense.weight.zero_()
        model.head.dense.bias.fill_(2.0)  # every pair scored "same" with probability sigmoid(2)
    loss, metrics = model.training_loss(batch)
    expected = 0.5 * (-math.log(torch.sigmoid(torch.tensor(2.0)).item()) - math.log(1 - torch.sigmoid(torch.tensor(2.0)).item()))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(0.5)  # all same pairs right, all different pairs wrong


def write_pngs(root, data):
    for c, name in enumerate(data.class_names):
        (root / name).mkdir(parents=True)
        for i, idx in enumerate(data.class_indices[c].tolist()):
            Image.fromarray(data.images[idx, 0].numpy()).save(root / name / f"{i}.png")
    return root


def test_cli_train_evaluate_verify_and_bad_input(tmp_path, decode_cache, capsys):
    folder = write_pngs(tmp_path / "images", make_dataset(n_classes=10, per_class=6, size=12, seed=5))
    run = tmp_path / "run"
    assert main(["train", "siamese", "--variant", "koch-l1", "--dataset", "folder", "--data-dir", str(folder),
                 "--split", "0-5/6-7/8-9", "--encoder", "dense", "--image-size", "12", "--steps", "20",
                 "--val-every", "10", "--val-way", "2", "--val-query", "2", "--val-episodes", "10",
                 "--batch-size", "16", "--distort",
                 "--out", str(run), "--no-progress"]) == 0
    model, config = load_run(run)
    assert config.options["variant"] == "koch-l1" and model.variant_name == "koch-l1"
    assert model.threshold.item() != 0.0  # calibrated on validation pairs, saved with the weights
    assert main(["evaluate", str(run), "--ways", "2", "--shots", "1", "--queries", "2", "--episodes", "10",
                 "--no-progress"]) == 0
    capsys.readouterr()
    a, b = folder / "c0" / "0.png", folder / "c0" / "1.png"
    assert main(["verify", str(run), str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "similarity (probability of the same class):" in out and "decision:" in out

    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(tmp_path / "colour.png")
    for bad, message in ((tmp_path / "missing.png", "missing.png: No such file"),
                         (tmp_path / "notes.png", "notes.png.*not a PNG/JPEG"),
                         (tmp_path / "colour.png", "colour \\(3 channels\\) image but the model")):
        assert main(["verify", str(run), str(a), str(bad)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1  # one line, no traceback
        with pytest.raises(FewShotError, match=message):
            load_image(str(bad), config, invert=False)


def test_verify_prints_distance_for_the_contrastive_variant(tmp_path, decode_cache, capsys):
    folder = write_pngs(tmp_path / "images", make_dataset(n_classes=6, per_class=4, size=8, seed=6))
    run = tmp_path / "run"
    assert main(["train", "siamese", "--variant", "euclidean-contrastive", "--dataset", "folder", "--data-dir",
                 str(folder), "--split", "0-3/4-5", "--encoder", "dense", "--image-size", "8", "--steps", "3",
                 "--val-every", "0", "--batch-size", "8", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    image = folder / "c0" / "0.png"
    assert main(["verify", str(run), str(image), str(image)]) == 0
    out = capsys.readouterr().out
    assert "distance: 0.0000" in out and "decision: same class (same if < 0.5000)" in out


def test_validation_reads_and_calibration_alone_sets_the_threshold():
    data = make_dataset(n_classes=4, per_class=6, size=8, seed=7)
    model = SiameseNetwork(build_encoder("dense", 1, 8), variant="koch-l1").eval()
    config = RunConfig(method="siamese", val_way=2, val_shot=1, val_query=2, val_episodes=5)
    model.threshold.fill_(123.0)
    validation_accuracy(model, data, config)
    assert model.threshold.item() == 123.0  # reading the score leaves the saved threshold alone
    model.calibrate_on_validation(data, seed=0)
    assert model.threshold.item() != 123.0


def test_capabilities_are_declared():
    shared = SiameseNetwork(build_encoder("dense", 1, 8), variant="koch-l1")
    unshared = SiameseNetwork(build_encoder("dense", 1, 8), variant="unshared-concat")
    assert shared.scores_pairs and not shared.evaluates_by_instance
    assert shared.shared_embedding and not unshared.shared_embedding
    assert MANN.evaluates_by_instance and not MANN.scores_pairs


def test_verify_refuses_a_run_that_does_not_score_pairs(tmp_path, decode_cache, capsys):
    folder = write_pngs(tmp_path / "images", make_dataset(n_classes=6, per_class=4, size=8, seed=6))
    run = tmp_path / "run"
    assert main(["train", "protonet", "--dataset", "folder", "--data-dir", str(folder), "--split", "0-3/4-5",
                 "--encoder", "dense", "--image-size", "8", "--steps", "1", "--val-every", "0", "--n-way", "2",
                 "--k-shot", "1", "--n-query", "1", "--out", str(run), "--no-progress"]) == 0
    image = str(folder / "c0" / "0.png")
    capsys.readouterr()
    assert main(["verify", str(run), image, image]) == 2
    assert "'protonet' run, which does not score pairs" in capsys.readouterr().err
