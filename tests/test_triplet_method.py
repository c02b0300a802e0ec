"""Triplet samplers, the metric and triplet methods, and a short training run on synthetic classes."""
import pytest
import torch
from synthetic import make_dataset

from fewshot.data.dataset import ImageDataset
from fewshot.data.triplets import PKSampler, RandomTripletSampler
from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import embed_dataset
from fewshot.evaluation.retrieval import retrieval_metrics
from fewshot.methods import METHODS
from fewshot.methods.metric import MetricLearning, TripletNetwork
from fewshot.runs import build_method
from fewshot.training.config import resolve_config


def tiny(sizes):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    return ImageDataset(images, labels, [f"c{c}" for c in range(len(sizes))], "tiny")


def test_random_triplets_are_valid_and_reproducible():
    data = tiny([2, 3, 5, 4])
    sampler = RandomTripletSampler(data, batch_size=50, seed=3)
    a, p, n = sampler.indices(7)
    assert (data.labels[a] == data.labels[p]).all() and (a != p).all()
    assert (data.labels[a] != data.labels[n]).all()
    batch = sampler.batch(7)
    assert batch.images.shape == (150, 1, 4, 4) and torch.equal(batch.labels, data.labels[torch.cat([a, p, n])])
    assert torch.equal(batch.triplets.anchor, torch.arange(50))
    assert torch.equal(batch.triplets.negative[:2], torch.tensor([100, 101]))
    again = RandomTripletSampler(data, 50, 3).indices(7)
    assert all(torch.equal(u, v) for u, v in zip(sampler.indices(7), again, strict=True))
    assert not torch.equal(sampler.indices(8).anchor, sampler.indices(7).anchor)
    assert set(data.labels[torch.cat([sampler.indices(i).anchor for i in range(20)])].tolist()) == {0, 1, 2, 3}


def test_pk_batches():
    data = tiny([4, 5, 6, 4, 4])
    batch = PKSampler(data, classes_per_batch=3, images_per_class=4, seed=0).batch(2)
    assert batch.triplets is None and batch.images.shape[0] == 12
    labels = batch.labels.view(3, 4)
    assert (labels == labels[:, :1]).all() and len(set(labels[:, 0].tolist())) == 3
    assert len(set(PKSampler(data, 3, 4, seed=0).indices(2).flatten().tolist())) == 12


@pytest.mark.parametrize("make, message", [
    (lambda: RandomTripletSampler(tiny([5]), 8), "at least 2 classes"),
    (lambda: RandomTripletSampler(tiny([5, 1, 3]), 8), r"'c1' \(1\) have fewer"),
    (lambda: PKSampler(tiny([5, 1, 3]), 2, 2), r"'c1' \(1\) have fewer"),
    (lambda: PKSampler(tiny([5, 5]), 1, 4), r"classes_per_batch \(P\) must be an integer >= 2"),
    (lambda: PKSampler(tiny([5, 5]), 2, 1), r"images_per_class \(K\) must be an integer >= 2"),
    (lambda: PKSampler(tiny([5, 5]), 3, 2), r"has 2 classes; use P <= 2"),
    (lambda: PKSampler(tiny([5, 3]), 2, 4), "has only 3 images; use K <= 3"),
    (lambda: PKSampler(tiny([5, 5, 5]), 2, 2, min_classes=3), "needs 3 classes per batch"),
    (lambda: RandomTripletSampler(tiny([5, 5]), 0), "positive integer"),
])
def test_samplers_refuse_data_without_valid_triplets_at_construction(make, message):
    with pytest.raises(FewShotError, match=message):
        make()


def test_method_options_are_checked_with_valid_names():
    identity = torch.nn.Identity()
    with pytest.raises(FewShotError, match="pk sampler draws no triplets: choose a miner"):
        MetricLearning(identity, miner="none", sampler="pk")
    with pytest.raises(FewShotError, match="valid loss functions: contrastive, histogram"):
        MetricLearning(identity, loss="arcface")
    with pytest.raises(FewShotError, match="valid miners: all, batch_hard, semi_hard"):
        MetricLearning(identity, miner="hard")
    with pytest.raises(FewShotError, match="valid distances: cosine, euclidean, l1, squared_euclidean"):
        MetricLearning(identity, distance="hamming")
    with pytest.raises(FewShotError, match="valid samplers: triplets, pk"):
        MetricLearning(identity, sampler="random")
    with pytest.raises(FewShotError, match="the softmax_ratio loss function takes no option margin"):
        TripletNetwork(identity, margin=0.5)
    model = MetricLearning(identity, loss="histogram", miner="none")  # the histogram loss needs no triplets
    assert model.miner is None
    with pytest.raises(FewShotError, match="needs 3 classes per batch"):
        MetricLearning(identity, loss="quadruplet", classes_per_batch=2).training_batches(tiny([4, 4, 4]), 1, 0)
    assert MetricLearning(identity, miner="semi_hard", margin=0.3).miner.margin == 0.3
    assert {"metric", "triplet"} <= set(METHODS.names())


def test_triplet_defaults_are_the_seed_and_scores_are_nearest_prototype():
    model = TripletNetwork(torch.nn.Identity())
    assert (type(model.loss).__name__, type(model.distance).__name__, model.miner, model.sampler) == \
        ("SoftmaxRatioLoss", "L1Distance", None, "triplets")
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    scores = model.scores(support, torch.tensor([0, 0, 1]), torch.tensor([[1.0, 1.0]]), 2)
    assert torch.allclose(scores, torch.tensor([[-1.0, -4.0]]))  # L1 to prototypes (1, 0) and (0, 4)
    normalized = MetricLearning(torch.nn.Identity(), normalize=True)
    assert torch.allclose(normalized.embed_query(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))


def test_configs_build():
    for method, dataset in (("triplet", "mnist"), ("triplet", "omniglot"), ("metric", "omniglot"),
                            ("metric", "mnist")):
        config = resolve_config(method, overrides={"dataset": dataset})
        model = build_method(config)
        assert model.name == method
    seed_model = build_method(resolve_config("triplet", overrides={"dataset": "mnist"}))
    assert sum(p.numel() for p in seed_model.parameters()) == 190_148


@pytest.mark.parametrize("method, options", [
    ("metric", {"loss": "triplet_margin", "miner": "batch_hard", "classes_per_batch": 8, "images_per_class": 4}),
    ("triplet", {"batch_size": 32}),
])
def test_short_training_lowers_loss_and_beats_chance_on_held_out_classes(method, options):
    data = make_dataset(n_classes=24, per_class=10, size=16, seed=1)
    train, test = data.subset(range(16)), data.subset(range(16, 24))
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 64), torch.nn.ReLU())
    model = METHODS.get(method)(encoder, **options)

    def knn() -> float:
        embeddings = embed_dataset(model.eval(), test, torch.device("cpu"), query=True)
        return retrieval_metrics(embeddings, test.labels, model.distance, k=5, nmi=False).knn_accuracy

    before = knn()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    batches = model.training_batches(train, 40, seed=0)
    losses, accuracies = [], []
    for step in range(40):
        loss, metrics = model.training_loss(batches(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        accuracies.append(float(metrics["accuracy"]))
    after = knn()
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    assert sum(accuracies[-10:]) > sum(accuracies[:10])  # the batch's nearest neighbours agree more often
    assert after > 2 / 8 and after > before  # chance is 1/8
