"""Test-time heads: classify with another rule on a trained run's embedding, without training again."""
from __future__ import annotations

from fewshot.errors import FewShotError
from fewshot.methods import Method
from fewshot.methods.mahalanobis import MahalanobisClassifier

HEADS = ("mahalanobis",)


def with_head(method: Method, head: str, ridge: float = 1.0) -> Method:
    """A method that embeds with ``method``'s trained encoder and classifies by ``head``.

    ``ridge`` is the Mahalanobis head's ``b`` (the paper's 1; an embedding with a large variance per
    dimension may want more: choose it on validation classes).

    Example:
        >>> mahalanobis = with_head(protonet, "mahalanobis")  # Simple CNAPS's rule on ProtoNet's embedding
        >>> evaluate(mahalanobis, splits["test"], n_way=5, k_shot=5)
    """
    if head not in HEADS:
        raise FewShotError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    if not method.embeds_images:
        raise FewShotError(f"a {method.name} run does not embed single images (its encoder reads whole episodes); "
                           f"test-time heads need a method that does, such as protonet")
    device = next(method.parameters()).device
    return MahalanobisClassifier(method.encoder, ridge=ridge).to(device).eval()
