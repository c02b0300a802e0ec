"""Every metric-learning loss against values computed by hand, and its gradients where embeddings coincide."""
import math

import pytest
import torch

from fewshot.errors import FewShotError
from fewshot.losses import (
    LOSSES,
    HistogramLoss,
    QuadrupletLoss,
    SoftmaxRatioLoss,
    SymmetricMarginLoss,
    TripletMarginLoss,
    TripletPairsContrastiveLoss,
    build_loss,
)
from fewshot.miners import Triplets

# 1-D embeddings: class 0 at 0 and 1, class 1 at 3, class 2 at 10. Euclidean distances are |x - y|.
X = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
Y = torch.tensor([0, 0, 1, 2])
T = Triplets(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2, 2]))  # d(a,p) = 1; d(a,n) = 3, 2


def triplets(*rows):
    return Triplets(*torch.tensor(rows).T)


def test_triplet_margin_by_hand():
    loss = TripletMarginLoss("euclidean", margin=1.5)
    # [1 - 3 + 1.5]_+ = 0, [1 - 2 + 1.5]_+ = 0.5 -> mean 0.25
    assert loss(X, Y, T).item() == pytest.approx(0.25)
    assert loss(X, Y, triplets([0, 1, 3])).item() == 0.0  # zero loss: the negative is 10 away
    # all violating: the positive is 5 away, the negative 1: [5 - 1 + 0]_+ = 4
    x = torch.tensor([[0.0], [5.0], [1.0]])
    assert TripletMarginLoss("euclidean", margin=0.0)(x, torch.tensor([0, 0, 1]), triplets([0, 1, 2])).item() == 4.0


def test_symmetric_margin_by_hand():
    loss = SymmetricMarginLoss("euclidean", margin=1.0)
    # triplet (0, 1, 2): [1 + 1 - 3]_+ + [1 + 1 - 2]_+ = 0 + 0 = 0; triplet (1, 0, 2): [1 + 1 - 2]_+ + [1 + 1 - 3]_+ = 0
    assert loss(X, Y, T).item() == 0.0
    # all violating: anchor 0, positive at 4, negative at 1: [1 + 4 - 1] + [1 + 4 - 3] = 4 + 2 = 6
    x = torch.tensor([[0.0], [4.0], [1.0]])
    assert loss(x, torch.tensor([0, 0, 1]), triplets([0, 1, 2])).item() == pytest.approx(6.0)
    # the second term uses d(p, n): with the negative next to the positive only it fires
    x = torch.tensor([[0.0], [1.0], [1.5]])
    assert loss(x, torch.tensor([0, 0, 1]), triplets([0, 1, 2])).item() == pytest.approx(0.5 + 1.5)


def test_softmax_ratio_by_hand():
    loss = SoftmaxRatioLoss()  # L1, the seed's
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]])  # d+ = 1, d- = 3 (L1)
    p_pos = math.exp(1) / (math.exp(1) + math.exp(3))
    expected = abs(p_pos) + abs(1 - (1 - p_pos))
    assert loss(x, torch.tensor([0, 0, 1]), triplets([0, 1, 2])).item() == pytest.approx(expected)
    assert expected == pytest.approx(2 / (1 + math.exp(2)))  # = 2 sigmoid(d+ - d-)
    far = torch.tensor([[0.0], [0.0], [50.0]])
    assert loss(far, torch.tensor([0, 0, 1]), triplets([0, 1, 2])).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(far, torch.tensor([0, 1, 0]), triplets([0, 2, 1])).item() == pytest.approx(2.0)  # all violating


def test_contrastive_on_triplet_pairs_by_hand():
    loss = TripletPairsContrastiveLoss("euclidean", margin=2.5)
    # pairs (0,1) same d=1 -> 1; (1,0) same -> 1; (0,2) diff d=3 -> 0; (1,2) diff d=2 -> 0.25; mean of 4
    assert loss(X, Y, T).item() == pytest.approx((1 + 1 + 0 + 0.25) / 4)
    zero = torch.tensor([[0.0], [0.0], [9.0]])
    assert loss(zero, torch.tensor([0, 0, 1]), triplets([0, 1, 2])).item() == pytest.approx(0.0, abs=1e-9)


def test_contrastive_is_the_siamese_implementation():
    from fewshot.losses import contrastive

    assert TripletPairsContrastiveLoss.forward.__globals__["contrastive_loss"] is contrastive.contrastive_loss


def test_quadruplet_by_hand():
    loss = QuadrupletLoss("euclidean", margin=2.5, second_margin=1.0)
    # triplet term: [1 - 3 + 2.5] = 0.5, [1 - 2 + 2.5] = 1.5 -> mean 1.0
    # pair term: l must differ from the anchor's class (0) and the negative's (1): only l = 3, d(3, 2) = 7
    # [1 - 7 + 1]_+ = 0 for both triplets
    assert loss(X, Y, T).item() == pytest.approx(1.0)
    # all violating: negatives (classes 1, 2) close together, positives far apart
    x = torch.tensor([[0.0], [5.0], [1.0], [1.5]])
    y = torch.tensor([0, 0, 1, 2])
    # triplet (0,1,2): [5 - 1 + 1] = 5; pair term l = 3: d(3, 2) = 0.5 -> [5 - 0.5 + 0.5] = 5
    assert QuadrupletLoss("euclidean", margin=1.0, second_margin=0.5)(x, y, triplets([0, 1, 2])).item() == \
        pytest.approx(10.0)
    assert QuadrupletLoss("euclidean", 0.5, 0.25)(X, Y, triplets([0, 1, 3])).item() == 0.0


def test_histogram_by_hand():
    loss = HistogramLoss("cosine", bins=3)  # nodes at distance 0, 1, 2
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # positive pair (0, 1): d = 1; negative pairs (0, 2): 2, (1, 2): 1. h+ = [0, 1, 0], h- = [0, .5, .5]
    # L = sum_r h-_r * P(d+ >= t_r) = .5 * 1 + .5 * 0
    assert loss(x, torch.tensor([0, 0, 1]), None).item() == pytest.approx(0.5)
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    assert loss(separated, torch.tensor([0, 0, 1, 1]), None).item() == 0.0
    assert loss(separated, torch.tensor([0, 1, 0, 1]), None).item() == pytest.approx(1.0)  # all violating
    # a distance between nodes splits its weight linearly: d+ = 0.5 -> h+ = [.5, .5, 0];
    # d- = 2 and 1.5 -> h- = [0, .25, .75]; P(d+ >= t_r) = [1, .5, 0]; L = .25 * .5
    x = torch.tensor([[1.0, 0.0], [0.5, 3 ** 0.5 / 2], [-1.0, 0.0]])
    assert loss(x, torch.tensor([0, 0, 1]), None).item() == pytest.approx(0.125, abs=1e-6)
    assert HistogramLoss("euclidean", bins=5).max_distance == 2.0


@pytest.mark.parametrize("name, distance", [
    (name, distance)
    for name in ("symmetric_margin", "triplet_margin", "softmax_ratio", "contrastive", "quadruplet", "histogram")
    for distance in ("l1", "euclidean", "squared_euclidean", "cosine")
    if (name, distance) != ("histogram", "l1")  # refused: unbounded
])
def test_gradients_are_finite_when_embeddings_coincide(name, distance):
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.5, -1.0]], requires_grad=True)  # a = p = n
    loss = build_loss(name, distance)(x, torch.tensor([0, 0, 1, 2]), triplets([0, 1, 2], [1, 0, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["symmetric_margin", "triplet_margin", "softmax_ratio", "contrastive", "quadruplet"])
def test_no_triplets_gives_zero_not_nan(name):
    x = torch.randn(4, 3, requires_grad=True)
    empty = Triplets(*torch.empty(3, 0, dtype=torch.long))
    loss = build_loss(name)(x, torch.tensor([0, 0, 1, 1]), empty)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_registry_lists_names_and_refuses_bad_options():
    assert LOSSES.names() == ["contrastive", "histogram", "quadruplet", "softmax_ratio", "symmetric_margin",
                              "triplet_margin"]
    with pytest.raises(FewShotError, match="valid loss functions: contrastive, histogram, quadruplet"):
        build_loss("lifted")
    with pytest.raises(FewShotError, match="unknown distance 'manhattan'; valid distances: cosine"):
        build_loss("triplet_margin", "manhattan")
    with pytest.raises(FewShotError, match="takes no option bins; its options: margin"):
        build_loss("triplet_margin", bins=10)
    with pytest.raises(FewShotError, match="bounded distance"):
        build_loss("histogram", "l1")
    with pytest.raises(FewShotError, match="margin must be a number >= 0"):
        build_loss("symmetric_margin", margin=-1)
    assert build_loss("softmax_ratio").distance.__class__.__name__ == "L1Distance"
    assert build_loss("quadruplet").distance.__class__.__name__ == "SquaredEuclideanDistance"
