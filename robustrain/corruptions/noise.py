"""Noise corruptions: gaussian, shot, impulse (benchmark) and speckle (extra)."""

from __future__ import annotations

import torch

from .random import normal, uniform


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, sigma²) per pixel and channel."""
    return (x + normal(x.shape, 0.0, sigma, generator, x)).clamp(0, 1)


def shot_noise(x: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson(rate x) / rate: photon noise whose variance x / rate grows with brightness."""
    counts = torch.poisson(x.detach().float().cpu() * rate, generator=generator)
    return (counts / rate).to(x).clamp(0, 1)


def impulse_noise(x: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """skimage's salt-and-pepper: each value flips with probability `amount`, to 1 or 0 with equal odds."""
    draw = uniform(x.shape, 0, 1, generator, x)
    # one draw decides both: below amount / 2 salt, between amount / 2 and amount pepper
    return torch.where(draw < amount, (draw < amount / 2).to(x.dtype), x)


def speckle_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x + x N(0, sigma²): multiplicative noise."""
    return (x + x * normal(x.shape, 0.0, sigma, generator, x)).clamp(0, 1)
