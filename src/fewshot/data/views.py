"""Whole-episode views for test-time augmentation: the symmetries of the square.

Santoro et al.'s augmentation (2016, section 4.1) rotates each training class by a random
multiple of 90 degrees, so a MANN trained with it has met characters in all four
orientations: a test episode rotated as a whole is as familiar to it as the upright one,
and each view is a separate look at the same episode. :func:`dihedral_view` gives view
``i`` of the 8 symmetries of the square: ``0 .. 3`` rotate by ``90 i`` degrees, ``4 .. 7``
mirror left to right first. ``views = 4`` uses the rotations, ``views = 8`` all of them.
"""
from __future__ import annotations

import torch

from fewshot.errors import FewShotError

VIEW_COUNTS = (1, 4, 8)


def check_views(views: int) -> None:
    """Raise a :class:`FewShotError` unless ``views`` is one of :data:`VIEW_COUNTS`."""
    if views not in VIEW_COUNTS:
        raise FewShotError(f"views must be 1 (the episode as it is), 4 (rotated by 0, 90, 180 and 270 degrees) or "
                           f"8 (those and their mirror images), got {views!r}")


def dihedral_view(images: torch.Tensor, i: int) -> torch.Tensor:
    """View ``i`` (``0 .. 7``) of ``[..., h, w]`` square images: mirrored if ``i >= 4``, then rotated by ``90 (i % 4)``.

    Example:
        >>> dihedral_view(torch.arange(4.0).view(2, 2), 1)
        tensor([[1., 3.],
                [0., 2.]])
    """
    if not 0 <= i < 8:
        raise FewShotError(f"view index must be 0 .. 7, got {i}")
    if i == 0:
        return images
    if images.shape[-1] != images.shape[-2]:
        raise FewShotError(f"views rotate square images, got {images.shape[-2]}x{images.shape[-1]}; "
                           f"resize the images to a square or evaluate with views=1")
    if i >= 4:
        images = images.flip(-1)
    return torch.rot90(images, i % 4, (-2, -1))
