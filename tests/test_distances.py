import pytest
import torch

from fewshot.distances import get_distance
from fewshot.errors import FewShotError

A = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
B = torch.tensor([[3.0, 4.0], [1.0, 2.0], [0.0, 1.0]])


@pytest.mark.parametrize("name,expected", [
    ("l1", [[7, 3, 1], [4, 0, 2]]),
    ("squared_euclidean", [[25, 5, 1], [8, 0, 2]]),
    ("euclidean", [[5, 5 ** 0.5, 1], [8 ** 0.5, 0, 2 ** 0.5]]),
])
def test_distance_matrix_and_pairwise_by_hand(name, expected):
    d = get_distance(name)
    assert torch.allclose(d.matrix(A, B), torch.tensor(expected, dtype=torch.float), atol=1e-5)
    assert torch.allclose(d.pairwise(A, B[:2]), torch.tensor([expected[0][0], expected[1][1]], dtype=torch.float),
                          atol=1e-5)


def test_cosine_distance():
    d = get_distance("cosine")
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    assert torch.allclose(d.matrix(a, b), torch.tensor([[0.0, 1.0, 2.0]]), atol=1e-6)


def test_euclidean_gradient_is_finite_at_zero_distance():
    a = torch.ones(2, 3, requires_grad=True)
    get_distance("euclidean").pairwise(a, torch.ones(2, 3)).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_unknown_distance_lists_valid_names():
    with pytest.raises(FewShotError, match="valid distances: cosine, euclidean, l1, squared_euclidean"):
        get_distance("manhattan")
