"""Retrieval and clustering metrics against hand-computed values; chunking changes nothing."""
import math

import pytest
import torch

from fewshot.errors import FewShotError
from fewshot.evaluation.retrieval import kmeans, nearest_neighbours, normalized_mutual_information, retrieval_metrics

# 1-D points: class 0 at 0, 1, 2; class 1 at 2.6, 10.
X = torch.tensor([[0.0], [1.0], [2.0], [2.6], [10.0]])
Y = torch.tensor([0, 0, 0, 1, 1])


def test_metrics_by_hand():
    result = retrieval_metrics(X, Y, "euclidean", k=3, nmi=False)
    # ranked neighbours (relevant = same class), R = 2 for class 0 and 1 for class 1:
    # 0: 1 (+), 2 (+)          P@1 1, R-prec 1,   AP@R (1 + 1) / 2 = 1
    # 1: 0/2 (+, +)            P@1 1, R-prec 1,   AP@R 1
    # 2: 3 (-), 1 (+)          P@1 0, R-prec 1/2, AP@R (0 + 1/2) / 2 = 1/4
    # 3: 2 (-)                 P@1 0, R-prec 0,   AP@R 0
    # 4: 3 (+)                 P@1 1, R-prec 1,   AP@R 1
    assert result.precision_at_1 == pytest.approx(3 / 5)
    assert result.r_precision == pytest.approx((1 + 1 + 0.5 + 0 + 1) / 5)
    assert result.map_at_r == pytest.approx((1 + 1 + 0.25 + 0 + 1) / 5)
    # 3-NN votes: 0: 1, 2, 3 -> 0 (right); 1: 0, 2, 3 -> 0; 2: 3, 1, 0 -> 0; 3: 2, 1, 0 -> 0 (wrong);
    # 4: 3, 2, 1 -> 0 (wrong)
    assert result.knn_accuracy == pytest.approx(3 / 5)
    assert (result.queries, result.classes, result.k) == (5, 2, 3)


def test_knn_ties_go_to_the_nearer_class():
    x = torch.tensor([[0.0], [1.0], [2.0], [5.0], [5.0]])
    y = torch.tensor([0, 1, 0, 1, 2])  # query 0: neighbours 1 (class 1), 2 (class 0): a 1-1 tie
    # predictions: 0 -> 1 (tie, 1 is nearer); 1 -> 0; 2 -> 1 (tie); 3 -> 2; 4 is alone in its class, left out
    assert retrieval_metrics(x, y, k=2, nmi=False).knn_accuracy == pytest.approx(0.0)


def test_chunked_equals_unchunked_and_brute_force():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (150,), generator=g)
    x = torch.randn(6, 8, generator=g)[labels] * 0.8 + torch.randn(150, 8, generator=g)
    for distance in ("euclidean", "l1", "cosine"):
        whole = retrieval_metrics(x, labels, distance, k=5, nmi=False)
        chunked = retrieval_metrics(x, labels, distance, k=5, nmi=False, budget=97)
        assert whole.to_dict() == pytest.approx(chunked.to_dict())
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    order = d.argsort(1)
    p1 = (labels[order[:, 0]] == labels).float().mean().item()
    r = torch.bincount(labels)[labels] - 1
    r_precision = torch.stack([(labels[order[i, :r[i]]] == labels[i]).float().mean() for i in range(150)]).mean()
    result = retrieval_metrics(x, labels, "euclidean", nmi=False, budget=300)
    assert result.precision_at_1 == pytest.approx(p1)
    assert result.r_precision == pytest.approx(r_precision.item())
    values, indices = nearest_neighbours(x, 4, "euclidean", budget=50)
    assert torch.equal(indices, order[:, :4]) and torch.allclose(values, d.gather(1, order[:, :4]))


def test_singleton_classes_are_left_out_and_all_singletons_refused():
    x = torch.tensor([[0.0], [0.1], [5.0]])
    assert retrieval_metrics(x, torch.tensor([0, 0, 1]), nmi=False).queries == 2
    with pytest.raises(FewShotError, match="at least two embeddings"):
        retrieval_metrics(x, torch.tensor([0, 1, 2]))


def test_kmeans_nmi_on_separated_and_on_mixed_clusters():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(5).repeat_interleave(40)
    x = torch.randn(5, 16, generator=g)[labels] * 10 + torch.randn(200, 16, generator=g)
    assert retrieval_metrics(x, labels, k=3).nmi == pytest.approx(1.0)
    chunked = kmeans(x, 5, seed=0, budget=20)
    assert normalized_mutual_information(labels, chunked) == pytest.approx(1.0)


def test_nmi_by_hand():
    a, b = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    assert normalized_mutual_information(a, b) == pytest.approx(0.0)
    assert normalized_mutual_information(a, torch.tensor([7, 7, 3, 3])) == pytest.approx(1.0)
    # A = [0, 0, 1, 1], B = [0, 0, 0, 1]: H(A) = ln 2, H(B) = -(3/4 ln 3/4 + 1/4 ln 1/4),
    # I = 1/2 ln(1/2 / (1/2 * 3/4)) + 1/4 ln(1/4 / (1/2 * 3/4)) + 1/4 ln(1/4 / (1/2 * 1/4))
    h_a, h_b = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mutual = 0.5 * math.log(0.5 / 0.375) + 0.25 * math.log(0.25 / 0.375) + 0.25 * math.log(2)
    assert normalized_mutual_information(a, torch.tensor([0, 0, 0, 1])) == pytest.approx(mutual / ((h_a + h_b) / 2))
