"""Small host tensors (random draws made on a CPU generator) onto the device without stalling it.

Random draws come from CPU generators so that a seed gives the same numbers on every device. A
copy from ordinary (pageable) host memory to a GPU first waits for all the work queued there,
which empties the pipeline a training step keeps full; a copy from pinned memory is queued like
a kernel, and PyTorch keeps the pinned block alive until the copy has run.

Per-pixel noise (an attack's random start: 1.5 million numbers for a batch of 512 CIFAR images) is
the exception a training step may make: drawn on the host it costs milliseconds of host time and a
pinned buffer per step, so the trainer gives a GPU step a generator on the device
(`StepContext.noise`), and `uniform` / `normal` draw wherever their generator lives. A CPU generator
gives the same numbers as before on every device; a device generator gives the device's own.
"""

from __future__ import annotations

import torch


def to_device(draws: torch.Tensor, like: torch.Tensor | torch.device) -> torch.Tensor:
    """`draws` (a CPU tensor, or already one on the device) on `like`'s device (and in its dtype, for a
    tensor), asynchronously on a GPU."""
    device = like.device if isinstance(like, torch.Tensor) else torch.device(like)
    if device.type == "cuda" and draws.device.type == "cpu":
        draws = draws.pin_memory()
    if isinstance(like, torch.Tensor):
        return draws.to(like, non_blocking=True)
    return draws.to(device, non_blocking=True)


def uniform(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None,
            like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) draws from `generator` (None: the default CPU one), made on the generator's device and
    placed on `like`'s (a copy queued from the host only when the generator is a CPU one)."""
    return to_device(torch.rand(shape, generator=generator, device=_home(generator)), like)


def normal(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None,
           like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) draws from `generator`, made and placed as `uniform`'s are."""
    return to_device(torch.randn(shape, generator=generator, device=_home(generator)), like)


def _home(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device
