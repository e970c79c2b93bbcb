"""Small host tensors (random draws made on a CPU generator) onto the device without stalling it.

Random draws come from CPU generators so that a seed gives the same numbers on every device. A
copy from ordinary (pageable) host memory to a GPU first waits for all the work queued there,
which empties the pipeline a training step keeps full; a copy from pinned memory is queued like
a kernel, and PyTorch keeps the pinned block alive until the copy has run.
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
