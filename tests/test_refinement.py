"""Semi-supervised refinement of prototypes by the queries (Ren et al. 2018): the rule, its wiring, its refusals."""
import math

import pytest
import torch
from synthetic import make_dataset

from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import evaluate
from fewshot.evaluation.refinement import Refined, refine_prototypes
from fewshot.methods.base import class_means
from fewshot.methods.mahalanobis import MahalanobisClassifier
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.methods.transfer import TransferBaseline
from fewshot.nets import build_encoder


def protonet_2d():
    return PrototypicalNetworks(torch.nn.Identity(), distance="squared_euclidean")


def test_one_step_moves_each_prototype_to_the_weighted_mean_of_support_and_queries():
    support = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    labels = torch.tensor([0, 1])
    query = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    # squared distances to (0,0) and (4,0): query 1 -> 1, 9; query 2 -> 13, 5
    z1 = [1 / (1 + math.exp(-8)), math.exp(-8) / (1 + math.exp(-8))]
    z2 = [math.exp(-8) / (1 + math.exp(-8)), 1 / (1 + math.exp(-8))]
    expected = torch.tensor([
        [(0 + z1[0] * 1 + z2[0] * 3) / (1 + z1[0] + z2[0]), (0 + z1[0] * 0 + z2[0] * 2) / (1 + z1[0] + z2[0])],
        [(4 + z1[1] * 1 + z2[1] * 3) / (1 + z1[1] + z2[1]), (0 + z1[1] * 0 + z2[1] * 2) / (1 + z1[1] + z2[1])],
    ])
    refined = refine_prototypes(protonet_2d(), support, labels, query, 2, steps=1)
    assert torch.allclose(refined, expected, atol=1e-6)
    assert torch.allclose(refined, torch.tensor([[0.5, 0.0], [3.5, 1.0]]), atol=1e-3)
    twice = refine_prototypes(protonet_2d(), support, labels, query, 2, steps=2)
    assert not torch.allclose(twice, refined)


def test_zero_steps_is_the_plain_method():
    support = torch.randn(3, 6, 5)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    query = torch.randn(3, 9, 5)
    assert torch.allclose(refine_prototypes(protonet_2d(), support, labels, query, 3, 0),
                          class_means(support, labels, 3))
    data = make_dataset(n_classes=8, per_class=8, seed=2)
    torch.manual_seed(0)
    model = PrototypicalNetworks(build_encoder("conv4", 1, 28))
    plain = evaluate(model, data, 3, 1, 4, 30, progress=False)
    zero = evaluate(model, data, 3, 1, 4, 30, progress=False, refine=0)
    assert zero.mean == plain.mean and zero.setting == plain.setting == "3-way 1-shot"


def test_refinement_is_batched_over_episodes_and_labelled_in_results():
    test = make_dataset(n_classes=12, per_class=10, size=16, seed=4).subset(list(range(8, 12)))
    torch.manual_seed(0)
    model = PrototypicalNetworks(build_encoder("conv4", 1, 16)).eval()
    refined = Refined(model, 2)
    support, query = torch.randn(4, 8, 64), torch.randn(4, 12, 64)
    labels = torch.arange(4).repeat_interleave(2)
    alone = torch.stack([refined.scores(s, labels, q, 4) for s, q in zip(support, query)])
    assert torch.allclose(refined.scores(support, labels, query, 4), alone, atol=1e-4)
    result = evaluate(model, test, 4, 1, 5, 40, progress=False, refine=2)
    plain = evaluate(model, test, 4, 1, 5, 40, progress=False)
    assert result.setting == "4-way 1-shot refined 2 steps" and result.to_dict()["refine"] == 2
    assert result.mean != plain.mean and result.mean > 0.4  # chance is 0.25
    assert evaluate(model, test, 4, 1, 5, 5, progress=False, refine=1).setting == "4-way 1-shot refined 1 step"


def test_transfer_nearest_mean_is_refined_fit_head_is_refused():
    torch.manual_seed(0)
    nearest = TransferBaseline(build_encoder("conv4", 1, 28))
    scores = Refined(nearest, 1).scores(torch.randn(4, 8), torch.tensor([0, 0, 1, 1]), torch.randn(3, 8), 2)
    assert scores.shape == (3, 2)
    with pytest.raises(FewShotError, match="transfer does not classify by prototypes"):
        Refined(TransferBaseline(build_encoder("conv4", 1, 28), classifier="fit_head"), 1)


@pytest.mark.parametrize("steps, message", [(-1, "whole number >= 0"), (1.5, "whole number >= 0"),
                                            (True, "whole number >= 0")])
def test_bad_steps_are_refused(steps, message):
    with pytest.raises(FewShotError, match=message):
        Refined(protonet_2d(), steps)


def test_a_method_without_prototypes_is_refused():
    data = make_dataset(n_classes=6, per_class=6)
    model = MahalanobisClassifier(build_encoder("conv4", 1, 28))
    with pytest.raises(FewShotError, match="mahalanobis does not classify by prototypes.*leave out --refine"):
        evaluate(model, data, 3, 1, 2, 5, progress=False, refine=1)


def test_a_method_embedding_queries_apart_is_refused():
    class TwoEmbeddings(PrototypicalNetworks):
        shared_embedding = False

    with pytest.raises(FewShotError, match="embeds support and queries differently"):
        Refined(TwoEmbeddings(torch.nn.Identity()), 1)
