"""Random affine distortion of image batches, on tensors (Koch et al. 2015, section 3.3).

Koch et al. distort each training image by ``T = (theta, rho_x, rho_y, s_x, s_y, t_x, t_y)``
drawn uniformly: rotation ``theta in [-10, 10]`` degrees, shear ``rho in [-0.3, 0.3]``, scale
``s in [0.8, 1.2]``, translation ``t in [-2, 2]`` pixels (of 105), each component kept with
probability 0.5. :func:`random_affine` draws one such transform per image from a
``torch.Generator`` and applies them all at once with ``affine_grid`` / ``grid_sample``.

:func:`random_thickening` widens the strokes of some images by a random amount, so that a
model trained on Omniglot's thin pen strokes also meets thicker ones (MNIST's digits carry
about 1.6 times the ink of an Omniglot character at 28x28). :func:`random_distortion` is
what the samplers call: thickening, then the affine map.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fewshot.errors import FewShotError

KOCH_DISTORTION = {"rotation": 10.0, "shear": 0.3, "scale": (0.8, 1.2), "translate": 2 / 105, "probability": 0.5}
"""Koch et al.'s ranges; ``translate`` is their 2 pixels as a fraction of their 105-pixel images."""


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    rotation: float = 0.0,
    shear: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    translate: float = 0.0,
    probability: float = 1.0,
) -> torch.Tensor:
    """Each image of ``[n, c, h, w]`` under its own random affine map; zeros fill what comes in from outside.

    Args:
        images: float images ``[n, c, h, w]`` (dark background, as every loader gives them).
        generator: the CPU generator all parameters are drawn from (one draw per call).
        rotation: largest rotation, in degrees: ``theta ~ U[-rotation, rotation]``.
        shear: largest shear factor along each axis: ``rho_x, rho_y ~ U[-shear, shear]``.
        scale: range of the scale factor along each axis: ``s_x, s_y ~ U[scale]``.
        translate: largest shift along each axis, as a fraction of the image side.
        probability: each of the seven parameters is applied with this probability
            (otherwise it is the identity's value), independently.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_affine(torch.rand(8, 1, 28, 28), g, **KOCH_DISTORTION).shape
        torch.Size([8, 1, 28, 28])
    """
    if images.dim() != 4:
        raise ValueError(f"random_affine takes images [n, c, h, w], got shape {tuple(images.shape)}")
    low, high = scale
    if not 0 < low <= high or rotation < 0 or shear < 0 or translate < 0 or not 0 <= probability <= 1:
        raise FewShotError(
            f"bad affine distortion: rotation={rotation}, shear={shear}, translate={translate} must be >= 0, "
            f"scale={scale} a range 0 < low <= high, probability={probability} in [0, 1]"
        )
    n, _, h, w = images.shape
    u = torch.rand(n, 7, generator=generator) * 2 - 1  # in [-1, 1)
    keep = torch.rand(n, 7, generator=generator) < probability
    identity = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    spread = torch.tensor([math.radians(rotation), shear, shear, 1.0, 1.0, translate, translate])
    values = u * spread
    values[:, 3:5] = low + (u[:, 3:5] + 1) / 2 * (high - low)
    values = torch.where(keep, values, identity)
    theta, rho_x, rho_y, s_x, s_y, t_x, t_y = values.unbind(1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    rotate = torch.stack([cos, -sin, sin, cos], 1).view(n, 2, 2)
    shear_m = torch.stack([torch.ones(n), rho_x, rho_y, torch.ones(n)], 1).view(n, 2, 2)
    forward = rotate @ shear_m @ torch.diag_embed(torch.stack([s_x, s_y], 1))
    # affine_grid maps output to input coordinates: x_in = A^-1 (x_out - t), in [-1, 1] units of each axis.
    half = torch.tensor([w / 2, h / 2])
    inverse = torch.linalg.inv(forward)
    inverse = inverse * half[None, None, :] / half[None, :, None]  # D^-1 A^-1 D for non-square images
    shift = torch.stack([t_x * w, t_y * h], 1) / half  # pixels -> normalised units
    offset = -(inverse @ shift.unsqueeze(-1))
    matrix = torch.cat([inverse, offset], 2).to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_thickening(images: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """Each image's strokes thickened, with ``probability``, by a random amount ``t ~ U[0, 1]``.

    ``x' = max(x, t * dilate(x))`` with ``dilate`` the 3x3 grey-level dilation (a max-pool of
    stride 1): ``t = 1`` adds a pixel on every side of each stroke, smaller ``t`` a fainter rim.
    Strokes must be bright on a dark background, as every loader gives them.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_thickening(torch.rand(8, 1, 28, 28), g, probability=0.5).shape
        torch.Size([8, 1, 28, 28])
    """
    if not 0 <= probability <= 1:
        raise FewShotError(f"the thickening probability must lie in [0, 1], got {probability}")
    n = images.shape[0]
    amount = torch.rand(n, generator=generator)
    amount = torch.where(torch.rand(n, generator=generator) < probability, amount, torch.zeros(n))
    amount = amount.to(device=images.device, dtype=images.dtype).view(n, 1, 1, 1)
    return torch.maximum(images, amount * F.max_pool2d(images, 3, stride=1, padding=1))


def random_distortion(images: torch.Tensor, generator: torch.Generator, thicken: float = 0.0,
                      **affine: float | tuple[float, float]) -> torch.Tensor:
    """:func:`random_thickening` with probability ``thicken`` (skipped at 0), then :func:`random_affine`
    with the keyword arguments ``affine`` (skipped when there are none).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_distortion(torch.rand(8, 1, 28, 28), g, thicken=0.5, **KOCH_DISTORTION).shape
        torch.Size([8, 1, 28, 28])
    """
    if thicken:
        images = random_thickening(images, generator, thicken)
    return random_affine(images, generator, **affine) if affine else images
