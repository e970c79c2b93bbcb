"""Blur corruptions: defocus, glass, motion, zoom (benchmark) and gaussian (extra)."""

from __future__ import annotations

import numpy as np
import torch

from . import ops
from .random import integers, uniform


def gaussian_blur(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    return ops.gaussian_blur(x, sigma).clamp(0, 1)


def glass_walk(offsets: np.ndarray, height: int, width: int, delta: int) -> np.ndarray:
    """Where each pixel of glass blur's output comes from: (N, H*W) flat source indices.

    The reference walks the image from the bottom-right corner and, at each position, runs
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on a NumPy (H, W, 3) array, with (dx, dy) drawn from
    [-delta, delta). The right-hand side holds views, so the first assignment overwrites the pixel
    that the second one then copies back: the statement copies x[h', w'] onto x[h, w] and leaves
    x[h', w'] as it was. The released CIFAR-10-C was made that way, so this walk copies too. A copied
    pixel can be carried on by a later step, so the walk stays sequential over positions (batched
    over images). offsets: (iterations, positions, 2 = (dx, dy), N) integers.
    """
    source = np.tile(np.arange(height * width), (offsets.shape[-1], 1))
    images = np.arange(offsets.shape[-1])
    for here, there in glass_walk_steps(offsets, height, width, delta):
        source[:, here] = source[images, there]
    return source


def glass_walk_steps(offsets: np.ndarray, height: int, width: int, delta: int):
    """The reference walk, step by step from the bottom-right corner: (flat index of (h, w), flat
    index of its partner (h + dy, w + dx)); offsets as in glass_walk."""
    positions = [(h, w) for h in range(height - delta, delta, -1) for w in range(width - delta, delta, -1)]
    for step in range(offsets.shape[0]):
        for k, (h, w) in enumerate(positions):
            dx, dy = offsets[step, k]
            yield h * width + w, (h + dy) * width + (w + dx)


def glass_blur(x: torch.Tensor, params: tuple[float, int, int], generator: torch.Generator) -> torch.Tensor:
    """Blur, move pixels locally (glass_walk), blur again: frosted glass.

    Between the blurs the image is stored as 8-bit (truncated), as in the reference.
    """
    sigma, delta, iterations = params
    n, channels, height, width = x.shape
    blurred = ops.truncate_to_uint8(ops.gaussian_blur(x, sigma)).to(x.dtype) / 255
    positions = (height - 2 * delta) * (width - 2 * delta)
    offsets = integers((iterations, positions, 2, n), -delta, delta, generator, torch.device("cpu")).numpy()
    # The walk moves pixel indices, not pixels; NumPy's per-call cost is a fraction of torch's here.
    source = glass_walk(offsets, height, width, delta)
    index = torch.from_numpy(source).to(x.device).unsqueeze(1).expand(n, channels, -1)
    shuffled = blurred.reshape(n, channels, -1).gather(2, index).reshape(x.shape)
    return ops.gaussian_blur(shuffled, sigma).clamp(0, 1)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's anti-aliased disk: an indicator of x² + y² <= r², normalized, then cv2.GaussianBlur."""
    if radius <= 8:
        half, blur_size = 8, 3
    else:
        half, blur_size = int(radius), 5
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((coords[None, :] ** 2 + coords[:, None] ** 2) <= radius**2).double()
    disk /= disk.sum()
    taps = torch.arange(blur_size, dtype=torch.float64) - (blur_size - 1) / 2
    gauss = torch.exp(-taps**2 / (2 * alias_blur**2))
    gauss /= gauss.sum()
    return ops.filter2d(disk[None, None], gauss[:, None] * gauss[None, :], "mirror")[0, 0]


def defocus_blur(x: torch.Tensor, params: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    radius, alias_blur = params
    return ops.filter2d(x, disk_kernel(radius, alias_blur), "mirror").clamp(0, 1)


def motion_blur(x: torch.Tensor, params: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """ImageMagick motion blur at an angle drawn from [-45, 45] degrees per image; 8-bit output."""
    radius, sigma = params
    angles = uniform((x.shape[0],), -45, 45, generator, torch.empty((), dtype=torch.float64))
    return ops.imagemagick_8bit(ops.motion_blur(x, radius, sigma, angles))


def zoom_blur(x: torch.Tensor, factors: tuple[float, ...], generator: torch.Generator) -> torch.Tensor:
    """The mean of the image and its centre zooms by each factor."""
    total = x.clone()
    for factor in factors:
        total += ops.clipped_zoom(x, factor)
    return (total / (len(factors) + 1)).clamp(0, 1)
