"""Semi-supervised refinement of prototypes by the episode's unlabelled queries (Ren et al. 2018).

Each step is one soft k-means step (Ren et al. 2018, eq. 4): every query is softly assigned to the
classes by the softmax of the method's own scores against the current prototypes (ProtoNet's: minus
distances, as in the paper), and each prototype becomes the weighted mean of its support examples
(weight 1) and of all the queries (their assignment to it),
``c_k = (sum_i x_i [y_i = k] + sum_j z_jk q_j) / (sum_i [y_i = k] + sum_j z_jk)``.
A query's class then depends on the other queries of its episode: the test is transductive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.methods.base import Batch, BatchSource, Method, class_means


def check_refinement(method: Method, steps: int) -> None:
    """Raise :class:`FewShotError` unless ``method`` classifies by prototypes and ``steps`` is a count of steps."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise FewShotError(f"refinement steps must be a whole number >= 0 (e.g. --refine 1), got {steps!r}")
    if method.gallery_rule != "prototype":
        raise FewShotError(f"refinement moves class prototypes and {method.name} does not classify by prototypes; "
                           f"refine protonet, metric, triplet or transfer (classifier nearest_mean) runs, without "
                           f"--head or --ensemble, or leave out --refine")
    if not method.shared_embedding:
        raise FewShotError(f"{method.name} embeds support and queries differently; refinement needs one "
                           f"embedding for both: leave out --refine")


def refine_prototypes(method: Method, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                      n_way: int, steps: int) -> torch.Tensor:
    """The prototypes ``[..., n_way, d]`` after ``steps`` soft k-means steps on the queries ``[..., n_query, d]``."""
    support, query = support.float(), query.float()
    prototypes = class_means(support, support_labels, n_way)
    owner = F.one_hot(support_labels, n_way).float()  # [n_support, n_way]
    support_sums, support_counts = owner.T @ support, owner.sum(0)
    classes = torch.arange(n_way, device=support.device)
    for _ in range(steps):
        assignment = method.scores(prototypes, classes, query, n_way).float().softmax(-1)  # [..., n_query, n_way]
        sums = support_sums + assignment.mT @ query
        prototypes = sums / (support_counts + assignment.sum(-2)).unsqueeze(-1)
    return prototypes


class Refined(Method):
    """A prototype method whose prototypes are refined by each episode's queries before it scores them.

    It embeds with the method's encoder (support and queries alike) and scores with the method's own rule
    against the refined prototypes; ``steps = 0`` scores as the method does.

    Example:
        >>> evaluate(Refined(protonet, steps=1), splits["test"], n_way=5, k_shot=1)
    """

    name = "refined"
    gallery_refusal = "refined prototypes depend on the queries of an episode; serve the run itself"

    def __init__(self, method: Method, steps: int) -> None:
        check_refinement(method, steps)
        super().__init__(method.encoder)
        self.method, self.steps = method, steps
        self.train(method.training)

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        raise FewShotError("refinement is a test-time rule: train the method itself with fewshot train")

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise FewShotError("refinement is a test-time rule: train the method itself with fewshot train")

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        if self.steps == 0:
            return self.method.scores(support, support_labels, query, n_way)
        prototypes = refine_prototypes(self.method, support, support_labels, query, n_way, self.steps)
        return self.method.scores(prototypes, torch.arange(n_way, device=support.device), query, n_way)
