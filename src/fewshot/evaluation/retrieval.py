"""Retrieval and clustering metrics of embeddings, computed in chunks.

Every embedding is a query against all the others (leave-one-out), ranked by a
distance. With ``R`` the number of other embeddings of the query's class
(Musgrave, Belongie and Lim 2020, "A Metric Learning Reality Check", section 3.2):

- precision@1: the nearest neighbour is of the query's class;
- R-precision: the share of the query's class among its ``R`` nearest neighbours;
- MAP@R: mean average precision over those ``R`` ranks, ``(1/R) sum_{i<=R} P(i) rel(i)``;
- k-NN accuracy: the majority class of the ``k`` nearest neighbours is the query's
  (ties go to the class of the nearer neighbour);
- NMI: normalised mutual information (arithmetic mean of the entropies) between the
  classes and a k-means clustering with one cluster per class.

Queries whose class has no other embedding are left out. Distances are computed one
block of rows at a time, with no intermediate above ``budget`` elements, so 100,000
embeddings fit in a few hundred megabytes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from fewshot.distances import Distance, get_distance
from fewshot.errors import FewShotError

BUDGET = 2**24  # elements of the largest intermediate tensor (64 MiB of float32)


@dataclass
class RetrievalResult:
    """Leave-one-out retrieval metrics (fractions in [0, 1]) over ``queries`` embeddings of ``classes`` classes."""

    precision_at_1: float
    r_precision: float
    map_at_r: float
    knn_accuracy: float
    k: int
    nmi: float | None
    queries: int
    classes: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        nmi = "" if self.nmi is None else f", NMI {self.nmi:.4f}"
        return (f"P@1 {self.precision_at_1:.4f}, R-precision {self.r_precision:.4f}, MAP@R {self.map_at_r:.4f}, "
                f"{self.k}-NN accuracy {self.knn_accuracy:.4f}{nmi} ({self.queries} queries, {self.classes} classes)")


def _as_distance(distance: Distance | str) -> Distance:
    return get_distance(distance) if isinstance(distance, str) else distance


def distance_rows(queries: torch.Tensor, gallery: torch.Tensor, distance: Distance,
                  budget: int = BUDGET) -> torch.Tensor:
    """``distance.matrix(queries, gallery)`` built from gallery blocks of at most ``budget`` elements each."""
    step = max(1, budget // max(1, len(queries) * gallery.shape[1]))  # L1 holds a [q, step, d] intermediate
    return torch.cat([distance.matrix(queries, gallery[s:s + step]) for s in range(0, len(gallery), step)], dim=1)


@torch.no_grad()
def nearest_neighbours(
    embeddings: torch.Tensor, k: int, distance: Distance | str = "euclidean", budget: int = BUDGET
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each embedding, its ``k`` nearest others: ``(distances [n, k], indices [n, k])``, nearest first."""
    distance = _as_distance(distance)
    n = len(embeddings)
    if not 1 <= k < n:
        raise FewShotError(f"{k} nearest neighbours need more than {k} embeddings, got {n}")
    rows = max(1, budget // n)
    values, indices = [], []
    for start in range(0, n, rows):
        block = distance_rows(embeddings[start:start + rows], embeddings, distance, budget)
        own = torch.arange(len(block), device=block.device)
        block[own, start + own] = math.inf
        top = block.topk(k, dim=1, largest=False)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


@torch.no_grad()
def retrieval_metrics(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    distance: Distance | str = "euclidean",
    k: int = 5,
    nmi: bool = True,
    seed: int = 0,
    budget: int = BUDGET,
) -> RetrievalResult:
    """Precision@1, R-precision, MAP@R, k-NN accuracy and (if ``nmi``) k-means NMI of ``embeddings [n, d]``.

    Example:
        >>> result = retrieval_metrics(embeddings, labels, "euclidean", k=5)
        >>> print(result)  # P@1 0.9712, R-precision 0.8120, MAP@R 0.7833, 5-NN accuracy 0.9750, NMI ...
    """
    embeddings, labels = embeddings.float(), torch.as_tensor(labels, device=embeddings.device).long()
    if embeddings.dim() != 2 or labels.shape != (len(embeddings),):
        raise FewShotError(f"retrieval metrics take embeddings [n, d] and labels [n], got "
                           f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    distance = _as_distance(distance)
    _, classes, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    others = counts[classes] - 1  # R of each query
    if not (others > 0).any():
        raise FewShotError("retrieval metrics need a class with at least two embeddings")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise FewShotError(f"k (of k-NN accuracy) must be a positive integer, got {k!r}")
    n, n_classes = len(embeddings), len(counts)
    k = min(k, n - 1)
    depth = min(n - 1, max(k, int(others.max())))
    rows = max(1, budget // max(n, depth * n_classes))
    ranks = torch.arange(1, depth + 1, device=embeddings.device)
    totals = torch.zeros(4, dtype=torch.float64)
    for start in range(0, n, rows):
        block = distance_rows(embeddings[start:start + rows], embeddings, distance, budget)
        own = torch.arange(len(block), device=block.device)
        block[own, start + own] = math.inf
        top = block.topk(depth, dim=1, largest=False).indices
        query, r = classes[start:start + rows], others[start:start + rows]
        hits = classes[top] == query.unsqueeze(1)
        relevant = (hits & (ranks <= r.unsqueeze(1))).float()
        r_safe = r.clamp_min(1).float()
        keep = r > 0
        totals += torch.stack([
            hits[:, 0].float()[keep].sum(),
            (relevant.sum(1) / r_safe)[keep].sum(),
            ((hits.float().cumsum(1) / ranks * relevant).sum(1) / r_safe)[keep].sum(),
            (_majority(classes[top[:, :k]], n_classes) == query).float()[keep].sum(),
        ]).double().cpu()
    queries = int((others > 0).sum())
    p1, r_precision, map_at_r, knn = (totals / queries).tolist()
    clustering = normalized_mutual_information(classes, kmeans(embeddings, n_classes, seed, budget=budget)) \
        if nmi else None
    return RetrievalResult(p1, r_precision, map_at_r, knn, k, clustering, queries, n_classes)


def _majority(neighbour_classes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The most frequent class of each row ``[q, k]``; among tied classes, the one met first."""
    q, k = neighbour_classes.shape
    earliest = torch.arange(k, 0, -1, device=neighbour_classes.device).expand(q, k)  # k for the nearest
    votes = torch.zeros(q, n_classes, device=neighbour_classes.device, dtype=torch.long)
    votes.scatter_add_(1, neighbour_classes, torch.full_like(neighbour_classes, k + 1))
    first = torch.zeros_like(votes).scatter_reduce_(1, neighbour_classes, earliest, reduce="amax")
    return (votes + first).argmax(1)


@torch.no_grad()
def kmeans(x: torch.Tensor, n_clusters: int, seed: int = 0, max_iterations: int = 100,
           budget: int = BUDGET) -> torch.Tensor:
    """Cluster index ``[n]`` of each row of ``x [n, d]``: k-means++ seeding (Arthur and Vassilvitskii 2007),
    then Lloyd iterations until no assignment changes; an emptied cluster keeps its centre."""
    x = x.float()
    n = len(x)
    if not 1 <= n_clusters <= n:
        raise FewShotError(f"k-means with {n_clusters} clusters needs at least that many points, got {n}")
    g = torch.Generator().manual_seed(seed)
    centres = x.new_empty(n_clusters, x.shape[1])
    centres[0] = x[torch.randint(n, (1,), generator=g)]
    closest = (x - centres[0]).pow(2).sum(1)
    for c in range(1, n_clusters):
        weights = closest.cpu().double()
        pick = torch.multinomial(weights if weights.sum() > 0 else torch.ones(n, dtype=torch.float64), 1,
                                 generator=g)
        centres[c] = x[pick]
        closest = torch.minimum(closest, (x - centres[c]).pow(2).sum(1))
    assignment = torch.full((n,), -1, dtype=torch.long, device=x.device)
    squared = get_distance("squared_euclidean")
    rows = max(1, budget // n_clusters)
    for _ in range(max_iterations):
        new = torch.cat([squared.matrix(x[s:s + rows], centres).argmin(1) for s in range(0, n, rows)])
        if torch.equal(new, assignment):
            break
        assignment = new
        sizes = torch.bincount(assignment, minlength=n_clusters)
        sums = torch.zeros_like(centres).index_add_(0, assignment, x)
        filled = sizes > 0
        centres[filled] = sums[filled] / sizes[filled].unsqueeze(1).to(x.dtype)
    return assignment


def normalized_mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """``I(A; B) / ((H(A) + H(B)) / 2)`` of two labelings ``[n]``; 1.0 when both have a single group.

    Example:
        >>> normalized_mutual_information(torch.tensor([0, 0, 1, 1]), torch.tensor([5, 5, 2, 2]))
        1.0
    """
    a, b = torch.unique(a.cpu(), return_inverse=True)[1], torch.unique(b.cpu(), return_inverse=True)[1]
    n = len(a)
    pairs, joint = torch.unique(a * (int(b.max()) + 1) + b, return_counts=True)
    p_joint = joint.double() / n
    p_a = torch.bincount(a).double() / n
    p_b = torch.bincount(b).double() / n
    a_of, b_of = pairs // (int(b.max()) + 1), pairs % (int(b.max()) + 1)
    mutual = (p_joint * (p_joint / (p_a[a_of] * p_b[b_of])).log()).sum().item()
    h_a, h_b = -(p_a * p_a.log()).sum().item(), -(p_b * p_b.log()).sum().item()
    if h_a + h_b == 0:
        return 1.0
    return max(0.0, mutual / ((h_a + h_b) / 2))
