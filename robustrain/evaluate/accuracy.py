"""Clean and adversarial accuracy of any `x -> logits` module on a dataset."""

from __future__ import annotations

import torch
from torch import nn

from ..attacks import Attack, running_mode
from ..data import ImageDataset


def accuracy(model: nn.Module, dataset: ImageDataset, *, batch_size: int = 500, device: torch.device | str = "cpu",
             attack: Attack | None = None, seed: int = 0, limit: int | None = None) -> float:
    """Top-1 accuracy in [0, 1] on the first `limit` images (all when None), under `attack` if given.

    The model runs in eval mode (restored afterwards); attack randomness is seeded.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    generator = torch.Generator().manual_seed(seed)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with running_mode(model, "eval"):
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            x = dataset.images[start:end].to(device).float().div_(255)
            y = dataset.labels[start:end].to(device)
            if attack is not None:
                x = attack(model, x, y, generator)
            with torch.no_grad():
                correct += (model(x).argmax(1) == y).sum()
    return correct.item() / n
