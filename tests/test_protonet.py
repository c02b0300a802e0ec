import pytest
import torch
from synthetic import make_dataset

from fewshot.errors import FewShotError
from fewshot.evaluation import evaluate
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.nets import build_encoder


def test_scores_are_negative_squared_distances_to_prototypes():
    model = PrototypicalNetworks(torch.nn.Identity())
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    labels = torch.tensor([0, 0, 1, 1])  # prototypes (1, 0) and (0, 5)
    query = torch.tensor([[1.0, 1.0]])
    scores = model.scores(support, labels, query, 2)
    assert torch.allclose(scores, torch.tensor([[-1.0, -17.0]]))
    model.set_support(support, labels)
    assert torch.equal(model.classify(query), scores)


def test_cosine_option_and_batched_episodes():
    model = PrototypicalNetworks(torch.nn.Identity(), distance="cosine")
    support = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])  # two episodes
    query = torch.tensor([[[2.0, 0.0]], [[2.0, 0.0]]])
    scores = model.scores(support, torch.tensor([0, 1]), query, 2)
    assert scores.shape == (2, 1, 2)
    assert scores[0, 0].argmax() == 0 and scores[1, 0].argmax() == 1


def test_unknown_distance_is_refused():
    with pytest.raises(FewShotError, match="valid: squared_euclidean, euclidean, cosine"):
        PrototypicalNetworks(torch.nn.Identity(), distance="l1")


def test_distort_until_without_distort_is_refused():
    with pytest.raises(FewShotError, match=r"pass distort=True \(--distort\) with it"):
        PrototypicalNetworks(torch.nn.Identity(), distort_until=100)


def test_short_training_lowers_loss_and_beats_chance_on_unseen_classes():
    data = make_dataset(n_classes=24, per_class=10, size=16, seed=1)
    train, test = data.subset(range(16)), data.subset(range(16, 24))
    torch.manual_seed(0)
    model = PrototypicalNetworks(build_encoder("conv4", 1, 16), n_way=8, k_shot=2, n_query=3)
    before = evaluate(model, test, n_way=4, k_shot=1, n_query=3, n_episodes=100, progress=False).mean
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    batches = model.training_batches(train, 40, seed=0)
    losses = []
    for step in range(40):
        loss, _ = model.training_loss(batches(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    after = evaluate(model, test, n_way=4, k_shot=1, n_query=3, n_episodes=100, progress=False).mean
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert after > 0.5 and after > before  # chance is 0.25


def test_conv4_block_equals_conv_bn_relu_pool():
    from fewshot.nets.conv4 import conv_block

    torch.manual_seed(0)
    block = conv_block(3, 8)
    conv, bn, pool, relu = block
    x = torch.randn(4, 3, 12, 12, requires_grad=True)
    reference = torch.nn.functional.max_pool2d(torch.relu(bn(conv(x))), 2)
    (grad_ref,) = torch.autograd.grad(reference.sum(), x)
    out = block(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(out, reference, atol=1e-6) and torch.allclose(grad, grad_ref, atol=1e-6)
