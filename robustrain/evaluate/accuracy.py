"""Clean and adversarial accuracy of any `x -> logits` module."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from ..attacks import Attack, running_mode
from ..data import FileImages, ImageDataset, iterate_uint8


def correct_mask(model: nn.Module, images: torch.Tensor | FileImages, labels: torch.Tensor, *, batch_size: int = 500,
                 device: torch.device | str = "cpu", attack: Attack | None = None,
                 generator: torch.Generator | None = None, progress: str | None = None) -> torch.Tensor:
    """Per image, whether the model classifies it correctly (under `attack` if given); bool on the CPU.

    images: uint8 (N, C, H, W), in memory or decoded batch by batch from files. The model runs in
    eval mode (restored afterwards).
    progress: a label for a progress bar on stderr (batches done, time left), none when None.
    """
    correct = []
    batches = iterate_uint8(images, batch_size, pin_memory=torch.device(device).type == "cuda")
    with running_mode(model, "eval"):
        for start, batch in zip(tqdm(range(0, len(images), batch_size), desc=progress, unit="batch", leave=False,
                                     disable=progress is None), batches):
            x = batch.to(device).float().div_(255)
            y = labels[start:start + batch_size].to(device)
            if attack is not None:
                x = attack(model, x, y, generator)
            with torch.no_grad():
                correct.append((model(x).argmax(1) == y).cpu())
    return torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool)


def fixed_subset(total: int, size: int | None, seed: int) -> torch.Tensor:
    """Indices of a seeded random subset, sorted; every image when `size` is None or too large.
    (Never the first `size` images: image folders are often sorted by class.)"""
    if size is None or size >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def accuracy(model: nn.Module, dataset: ImageDataset, *, batch_size: int = 500, device: torch.device | str = "cpu",
             attack: Attack | None = None, seed: int = 0, limit: int | None = None,
             progress: str | None = None) -> float:
    """Top-1 accuracy in [0, 1] on a fixed random subset of `limit` images (`fixed_subset` with
    `seed`; all images when None), under `attack` if given.

    The model runs in eval mode (restored afterwards); attack randomness is seeded.
    """
    subset = fixed_subset(len(dataset), limit, seed)
    mask = correct_mask(model, dataset.images[subset], dataset.labels[subset], batch_size=batch_size, device=device,
                        attack=attack, generator=torch.Generator().manual_seed(seed), progress=progress)
    return mask.sum().item() / len(subset)
