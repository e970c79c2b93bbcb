"""The L-inf and L2 geometry every attack shares: sizes, unit directions, projection onto the ball."""

from __future__ import annotations

from typing import Literal

import torch

Norm = Literal["linf", "l2"]


def format_radius(eps: float, norm: Norm = "linf") -> str:
    """A radius as people write it: k/255 where an L-inf radius is a whole number of pixel levels
    (8/255), else the number itself (MNIST's 0.3, any L2 radius)."""
    levels = eps * 255
    if norm == "linf" and abs(levels - round(levels)) < 1e-6 and 1 <= levels < 255:
        return f"{round(levels)}/255"
    return f"{eps:.4g}"


def per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (batch,) tensor shaped to broadcast over images like `like`."""
    return values.view((-1,) + (1,) * (like.dim() - 1))


def size(t: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The L-inf or L2 norm of each image of a batch, shape (batch,)."""
    flat = t.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def unit(t: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Each image of `t` scaled to norm 1 (zero images stay zero)."""
    return t / (per_image(size(t, norm), t) + 1e-12)


def steepest(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent direction of unit norm: sign(grad) for L-inf, grad / ||grad|| for L2."""
    return grad.sign() if norm == "linf" else unit(grad, norm)


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """The point of the eps-ball around x closest to x_adv (per image), clipped to [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * per_image(torch.clamp(eps / (size(delta, norm) + 1e-12), max=1.0), delta)
    return (x + delta).clamp(0, 1)
