"""Relation Networks: the feature-map encoder, the relation module's arithmetic, scores in [0, 1], learning."""
import pytest
import torch
import torch.nn.functional as F
from synthetic import make_dataset
from training_support import mean, train_briefly

from fewshot.errors import FewShotError
from fewshot.evaluation import evaluate
from fewshot.methods.relation import RelationModule, RelationNetworks
from fewshot.nets import build_encoder


def test_encoder_keeps_64x5x5_maps_at_28_pixels():
    encoder = build_encoder("relation_conv4", 1, 28)
    assert encoder.feature_shape == (64, 5, 5)
    assert encoder(torch.rand(2, 1, 28, 28)).shape == (2, 1600)
    with pytest.raises(FewShotError, match="at least 22 pixels"):
        build_encoder("relation_conv4", 1, 16)


def test_split_first_convolution_equals_convolving_each_concatenated_pair():
    torch.manual_seed(0)
    module = RelationModule((4, 5, 5)).eval()
    query, classes = torch.randn(3, 100), torch.randn(2, 100)
    weight = torch.cat([module.query_conv.weight, module.class_conv.weight], dim=1)  # conv over [query; class]
    pairs = torch.cat([query.view(3, 1, 4, 5, 5).expand(3, 2, 4, 5, 5),
                       classes.view(1, 2, 4, 5, 5).expand(3, 2, 4, 5, 5)], dim=2).reshape(6, 8, 5, 5)
    first = F.conv2d(pairs, weight, module.query_conv.bias, padding=1)
    expected = module.fc(module.second(module.first(first))).view(3, 2)
    assert torch.allclose(module(query, classes), expected, atol=1e-5)


def test_scores_lie_in_0_1_and_class_maps_pool_the_shots():
    torch.manual_seed(0)
    model = RelationNetworks(build_encoder("relation_conv4", 1, 28)).eval()
    support = torch.randn(6, 1600).abs()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    query = torch.randn(4, 1600).abs()
    scores = model.scores(support, labels, query, 3)
    assert scores.shape == (4, 3) and scores.min() >= 0 and scores.max() <= 1
    means = support.view(3, 2, 1600).mean(1)
    assert torch.allclose(model.scores(means, torch.arange(3), query, 3), scores, atol=1e-6)
    summing = RelationNetworks(build_encoder("relation_conv4", 1, 28), pool="sum").eval()
    summing.load_state_dict(model.state_dict())
    summed = summing.scores(support, labels, query, 3)
    assert torch.allclose(summing.scores(support.view(3, 2, 1600).sum(1), torch.arange(3), query, 3), summed, atol=1e-6)
    assert not torch.allclose(summed, scores)
    logits = RelationNetworks(build_encoder("relation_conv4", 1, 28), loss="cross_entropy").eval()
    assert logits.scores(support * 50, labels, query * 50, 3).abs().max() > 1  # logits are not squashed


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_short_training_beats_chance_on_unseen_classes(loss, one_thread):
    data = make_dataset(n_classes=24, per_class=10, size=24, seed=1)
    train, test = data.subset(range(16)), data.subset(range(16, 24))
    torch.manual_seed(0)
    model = RelationNetworks(build_encoder("relation_conv4", 1, 24, hidden=32), loss=loss,
                             n_way=5, k_shot=1, n_query=3)
    losses = train_briefly(model, train, 40)
    after = evaluate(model, test, n_way=4, k_shot=1, n_query=3, n_episodes=100, progress=False).mean
    assert mean(losses[-5:]) < 0.8 * mean(losses[:5])
    assert after > 0.45  # chance is 0.25


def test_bad_options_are_refused():
    with pytest.raises(FewShotError, match="valid: mse, cross_entropy"):
        RelationNetworks(build_encoder("relation_conv4", 1, 28), loss="hinge")
    with pytest.raises(FewShotError, match="valid: mean, sum"):
        RelationNetworks(build_encoder("relation_conv4", 1, 28), pool="max")
    with pytest.raises(FewShotError, match="--encoder relation_conv4"):
        RelationNetworks(build_encoder("conv4", 1, 28))


def test_transductive_batch_norm_uses_each_episode_and_leaves_the_model_as_it_was(one_thread):
    data = make_dataset(n_classes=24, per_class=10, size=24, seed=1)
    torch.manual_seed(0)
    model = RelationNetworks(build_encoder("relation_conv4", 1, 24, hidden=32), n_way=5, k_shot=1, n_query=3)
    train_briefly(model, data.subset(range(16)), 10)
    model.eval()
    test = data.subset(range(16, 24))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = evaluate(model, test, n_way=4, k_shot=1, n_query=3, n_episodes=20, progress=False)
    transductive = evaluate(model, test, n_way=4, k_shot=1, n_query=3, n_episodes=20, progress=False,
                            transductive=True)
    assert transductive.setting == "4-way 1-shot transductive" and transductive.mean != plain.mean
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m.training for m in model.modules())
    again = evaluate(model, test, n_way=4, k_shot=1, n_query=3, n_episodes=20, progress=False)
    assert again.mean == plain.mean
