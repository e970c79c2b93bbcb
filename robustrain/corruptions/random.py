"""Random draws for the corruptions: made in float32 on the CPU from a CPU generator, so a seed gives
the same corrupted images on every device; the result is moved to the images' device and dtype."""

from __future__ import annotations

import torch


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
            like: torch.Tensor) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * (high - low) + low).to(like)


def normal(shape: tuple[int, ...], mean: float, std: float, generator: torch.Generator,
           like: torch.Tensor) -> torch.Tensor:
    return (torch.randn(shape, generator=generator) * std + mean).to(like)


def integers(shape: tuple[int, ...], low: int, high: int, generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
    """Integers in [low, high), like numpy's randint."""
    return torch.randint(low, high, shape, generator=generator).to(device)
