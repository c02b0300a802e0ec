"""The miners return exactly the triplets their definitions say, without loops over the batch."""
import itertools

import pytest
import torch

from fewshot.distances import get_distance
from fewshot.errors import FewShotError
from fewshot.miners import MINERS, AllTripletsMiner, BatchHardMiner, SemiHardMiner, build_miner

# 1-D points: class 0 at 0, 1, 3; class 1 at 1.5, 10; class 2 alone at 4.
X = torch.tensor([[0.0], [1.0], [3.0], [1.5], [10.0], [4.0]])
Y = torch.tensor([0, 0, 0, 1, 1, 2])


def as_set(triplets):
    return set(zip(*(t.tolist() for t in triplets), strict=True))


def brute_force(x, y, keep):
    d = get_distance("euclidean").matrix(x, x)
    return {(a, p, n) for a, p, n in itertools.product(range(len(y)), repeat=3)
            if a != p and y[a] == y[p] and y[n] != y[a] and keep(d[a, p], d[a, n])}


def test_all_triplets_on_a_small_example():
    triplets = AllTripletsMiner()(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]))
    assert as_set(triplets) == {(0, 1, 2), (0, 1, 3), (1, 0, 2), (1, 0, 3),
                                (2, 3, 0), (2, 3, 1), (3, 2, 0), (3, 2, 1)}
    assert len(as_set(AllTripletsMiner()(X, Y))) == 3 * 2 * 3 + 2 * 1 * 4  # class 2 has no positive


def test_batch_hard_takes_the_farthest_positive_and_closest_negative():
    triplets = BatchHardMiner("euclidean")(X, Y)
    # anchor 0: positives 1 (1), 2 (3) -> 2; negatives 1.5, 10, 4 -> 3 (1.5)
    # anchor 1: positives 0 (1), 2 (2) -> 2; negatives 3 (0.5) -> 3
    # anchor 2: positives 0 (3), 1 (2) -> 0; negatives 3 (1.5), 4 (7), 5 (1) -> 5
    # anchor 3: positive 4; negatives 0 (1.5), 1 (0.5), 2 (1.5), 5 (2.5) -> 1
    # anchor 4: positive 3; negatives 0 (10), 1 (9), 2 (7), 5 (6) -> 5
    # anchor 5 has no positive: skipped
    assert as_set(triplets) == {(0, 2, 3), (1, 2, 3), (2, 0, 5), (3, 4, 1), (4, 3, 5)}


def test_semi_hard_keeps_negatives_farther_than_the_positive_within_the_margin():
    triplets = SemiHardMiner("euclidean", margin=1.0)(X, Y)
    expected = brute_force(X, Y, lambda d_ap, d_an: d_ap < d_an < d_ap + 1.0)
    assert as_set(triplets) == expected
    # by hand, e.g. anchor 0 positive 1 (d = 1): negatives at 1.5 only (4 and 10 are beyond 1 + 1)
    assert {t for t in expected if t[:2] == (0, 1)} == {(0, 1, 3)}
    assert (1, 0, 3) not in expected  # d(1, 3) = 0.5 < d(1, 0) = 1: a hard negative, not semi-hard


def test_miners_match_their_definitions_on_random_batches():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 5, generator=g), torch.randint(0, 4, (24,), generator=g)
    assert as_set(AllTripletsMiner()(x, y)) == brute_force(x, y, lambda *_: True)
    assert as_set(SemiHardMiner("euclidean", 0.5)(x, y)) == brute_force(x, y, lambda ap, an: ap < an < ap + 0.5)
    d = get_distance("euclidean").matrix(x, x)
    for a, p, n in as_set(BatchHardMiner("euclidean")(x, y)):
        assert d[a, p] == max(d[a, q] for q in range(24) if q != a and y[q] == y[a])
        assert d[a, n] == min(d[a, q] for q in range(24) if y[q] != y[a])


def test_mining_takes_no_gradient_and_uses_the_given_distance():
    x = torch.tensor([[1.0, 0.0], [10.0, 0.0], [0.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    triplets = BatchHardMiner("cosine")(x, y)
    assert not triplets.anchor.requires_grad
    assert as_set(triplets) == {(0, 1, 2), (1, 0, 2)}


def test_registry_names_and_errors():
    assert MINERS.names() == ["all", "batch_hard", "semi_hard"]
    with pytest.raises(FewShotError, match="unknown miner 'hardest'; valid miners: all, batch_hard, semi_hard"):
        build_miner("hardest")
    with pytest.raises(FewShotError, match="takes no option margin"):
        build_miner("batch_hard", margin=0.1)
    with pytest.raises(FewShotError, match="margin must be positive"):
        build_miner("semi_hard", margin=0)
