"""Matching Networks: the attention rule, full context embeddings, shuffled training support, learning."""
import pytest
import torch
from synthetic import make_dataset
from training_support import mean, train_briefly

from fewshot.errors import FewShotError
from fewshot.evaluation import evaluate
from fewshot.methods.matching import MatchingNetworks
from fewshot.nets import build_encoder


class Features(torch.nn.Identity):
    out_features = 3


def test_scores_are_log_class_shares_of_the_attention():
    model = MatchingNetworks(Features(), similarity="euclidean")
    support = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[0.0, 1.0, 0.0]])
    distances = torch.cdist(query, support)[0]
    attention = (-distances).softmax(-1)
    expected = torch.stack([attention[:2].sum(), attention[2]]).log()
    scores = model.scores(support, labels, query, 2)[0]
    assert torch.allclose(scores, expected, atol=1e-6)
    assert torch.allclose(scores.exp().sum(), torch.tensor(1.0))


def test_cosine_similarity_has_a_learned_scale():
    model = MatchingNetworks(Features(), similarity="cosine", scale=5.0)
    support, labels = torch.eye(3), torch.tensor([0, 1, 2])
    query = torch.tensor([[1.0, 0.0, 0.0]])
    scores = model.scores(support, labels, query, 3)[0]
    assert torch.allclose(scores, torch.tensor([5.0, 0.0, 0.0]).log_softmax(-1), atol=1e-6)
    scores[0].backward()
    assert model.scale.grad is not None and model.scale.grad.abs() > 0


def test_full_context_embeddings_depend_on_the_support_and_plain_ones_do_not():
    torch.manual_seed(0)
    query = torch.randn(4, 3)
    one, other = torch.randn(5, 3), torch.randn(5, 3)
    plain = MatchingNetworks(Features())
    assert torch.equal(plain.contextual(one, query)[1], query)
    assert torch.equal(plain.contextual(other, query)[1], query)
    fce = MatchingNetworks(Features(), fce=True, fce_steps=3)
    g_one, f_one = fce.contextual(one, query)
    g_other, f_other = fce.contextual(other, query)
    assert not torch.allclose(f_one, f_other)  # f reads the support
    assert not torch.allclose(g_one, one)  # g is not g'
    g_shuffled, _ = fce.contextual(one.flip(0), query)
    assert not torch.allclose(g_shuffled.flip(0), g_one)  # the bi-LSTM depends on the order


def test_batched_episodes_equal_episodes_one_at_a_time():
    torch.manual_seed(1)
    model = MatchingNetworks(Features(), fce=True).eval()
    support, query, labels = torch.randn(3, 6, 3), torch.randn(3, 4, 3), torch.arange(3).repeat_interleave(2)
    together = model.scores(support, labels, query, 3)
    alone = torch.stack([model.scores(support[i], labels, query[i], 3) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_training_support_is_shuffled_reproducibly():
    data = make_dataset(n_classes=8, per_class=6, size=16)
    model = MatchingNetworks(build_encoder("conv4", 1, 16), n_way=4, k_shot=2, n_query=1)
    batches = model.training_batches(data, 10, seed=3)
    first = batches(0)
    assert not torch.equal(first.support_labels, first.support_labels.sort().values)
    again = model.training_batches(data, 10, seed=3)(0)
    assert torch.equal(first.support, again.support) and torch.equal(first.support_labels, again.support_labels)
    assert torch.equal(first.query_labels, torch.arange(4))


@pytest.mark.parametrize("fce", [False, True])
def test_short_training_beats_chance_on_unseen_classes(fce, one_thread):
    data = make_dataset(n_classes=24, per_class=10, size=16, seed=1)
    train, test = data.subset(range(16)), data.subset(range(16, 24))
    torch.manual_seed(0)
    model = MatchingNetworks(build_encoder("conv4", 1, 16), fce=fce, n_way=8, k_shot=1, n_query=3)
    losses = train_briefly(model, train, 40)
    after = evaluate(model, test, n_way=4, k_shot=1, n_query=3, n_episodes=100, progress=False).mean
    assert mean(losses[-5:]) < 0.7 * mean(losses[:5])
    assert after > 0.5  # chance is 0.25


def test_one_shot_one_way_episode_works():
    model = MatchingNetworks(Features(), fce=True).eval()
    scores = model.scores(torch.randn(1, 3), torch.tensor([0]), torch.randn(2, 3), 1)
    assert scores.shape == (2, 1) and torch.allclose(scores, torch.zeros(2, 1), atol=1e-6)


def test_gallery_rule_and_bad_options():
    assert MatchingNetworks(Features()).gallery_rule == "pairs"
    assert MatchingNetworks(Features(), fce=True).gallery_rule is None
    with pytest.raises(FewShotError, match="valid: cosine, euclidean"):
        MatchingNetworks(Features(), similarity="l1")
    with pytest.raises(FewShotError, match="fce_steps must be at least 1"):
        MatchingNetworks(Features(), fce=True, fce_steps=0)
    with pytest.raises(FewShotError, match="out_features"):
        MatchingNetworks(torch.nn.Identity(), fce=True)
