"""Batched augmentations as tensor ops on the images' device.

Random draws come from a CPU `torch.Generator`, so a seed gives the same augmentation on
every device; only the draws (a few numbers per image) cross to the device, without waiting for it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..borders import fold_index
from ..host import to_device

PaddingMode = Literal["zeros", "reflect"]


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator,
                mode: PaddingMode = "zeros") -> torch.Tensor:
    """Pad by `padding` on each side (zeros, or "reflect": mirrored at the border without repeating
    it, numpy's and torch's reflect), then cut a random window of the original size per image."""
    if padding == 0:
        return images
    n, _, h, w = images.shape
    top = to_device(torch.randint(0, 2 * padding + 1, (n,), generator=generator), images.device)
    left = to_device(torch.randint(0, 2 * padding + 1, (n,), generator=generator), images.device)
    rows = (top[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    if mode == "reflect":  # gathered from the image itself: no padded copy, any dtype on any device
        if padding >= min(h, w):
            raise ValueError(f"data.crop_padding {padding} must be smaller than the {h}x{w} images to reflect them.")
        # numpy's and torch's reflect is the border rule scipy (and fold_index) call "mirror"
        return images[batch, channels, fold_index(rows - padding, h, "mirror"), fold_index(cols - padding, w, "mirror")]
    return F.pad(images, (padding,) * 4)[batch, channels, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = to_device(torch.rand(images.shape[0], generator=generator) < 0.5, images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True,
              mode: PaddingMode = "zeros") -> torch.Tensor:
    """The standard CIFAR training augmentation: random crop with padding, then horizontal flip."""
    images = random_crop(images, padding, generator, mode)
    return random_flip(images, generator) if flip else images
