"""Several trained models classified as one: the average of their class probabilities.

An ensemble's embedding of an image is its members' embeddings side by side, so the evaluator
embeds each test image once per member and scores thousands of episodes from the cache, as for
one model; :meth:`Ensemble.scores` splits the embedding back and averages the members' softmax
probabilities of their own scores (each member's own classify rule).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.methods.base import Batch, BatchSource, Method


class Ensemble(Method):
    """The members' class probabilities averaged; scores are the log of that average. In eval mode.

    Args:
        members: trained methods whose embeddings do not depend on the episode, all for images of
            ``image_shape``.
        image_shape: ``(channels, height, width)`` of the images the members take.

    Example:
        >>> ensemble = Ensemble([load_run("runs/a")[0], load_run("runs/b")[0]], (1, 28, 28))
        >>> evaluate(ensemble, splits["test"], n_way=20, k_shot=1, within_alphabet=True)
    """

    name = "ensemble"
    gallery_refusal = "an ensemble has one classify rule per member; serve one of its runs instead"

    def __init__(self, members: Sequence[Method], image_shape: tuple[int, int, int]) -> None:
        if len(members) < 2:
            raise FewShotError(f"an ensemble needs at least 2 trained runs, got {len(members)}")
        for m in members:
            if not m.episode_independent or not m.embeds_images:
                raise FewShotError(f"{m.name} does not embed each image on its own, the same in every episode, so it "
                                   f"cannot join an ensemble; the methods that do (all but mann) can")
        super().__init__(nn.ModuleList(members))
        self.eval()  # made of trained runs, never trained itself
        probe = torch.zeros(1, *image_shape, device=next(self.parameters()).device)
        with torch.no_grad():
            self.dims = [m.embed_support(probe).shape[-1] for m in members]

    @property
    def members(self) -> nn.ModuleList:
        return self.encoder

    @property
    def shared_embedding(self) -> bool:
        """Queries are embedded like the support when every member embeds them so."""
        return all(m.shared_embedding for m in self.members)

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        raise FewShotError("an ensemble is made of trained runs: train each member with fewshot train")

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise FewShotError("an ensemble is made of trained runs: train each member with fewshot train")

    def embed_support(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed_support(images) for m in self.members], -1)

    def embed_query(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed_query(images) for m in self.members], -1)

    def scores(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        probabilities = [
            m.scores(s, support_labels, q, n_way).float().softmax(-1)
            for m, s, q in zip(self.members, support.split(self.dims, -1), query.split(self.dims, -1))
        ]
        return torch.stack(probabilities).mean(0).log()
