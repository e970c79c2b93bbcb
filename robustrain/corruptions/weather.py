"""Weather corruptions: snow, frost, fog, brightness (benchmark); spatter (extra) lives in spatter.py."""

from __future__ import annotations

import math

import torch

from . import ops
from .random import integers, normal, uniform
from .textures import frost_textures


def snow(x: torch.Tensor, params: tuple[float, ...], generator: torch.Generator) -> torch.Tensor:
    """Flakes: thresholded Gaussian noise, zoomed and motion-blurred, added twice (once rotated by 180°).

    params = (mean, std, zoom, threshold, blur radius, blur sigma, image weight); the image is first
    whitened towards 1.5 gray + 0.5 by (1 - image weight).
    """
    mean, std, zoom, threshold, radius, sigma, weight = params
    n, _, height, width = x.shape
    flakes = ops.clipped_zoom(normal((n, 1, height, width), mean, std, generator, x), zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
    flakes = ops.truncate_to_uint8(flakes).to(x.dtype) / 255
    angles = uniform((n,), -135, -45, generator, torch.empty((), dtype=torch.float64))
    flakes = ops.imagemagick_8bit(ops.motion_blur(flakes, radius, sigma, angles))
    whitened = torch.maximum(x, ops.rgb_to_gray(x) * 1.5 + 0.5)
    x = weight * x + (1 - weight) * whitened
    return (x + flakes + flakes.flip(-2, -1)).clamp(0, 1)


def frost(x: torch.Tensor, params: tuple[float, float, float], generator: torch.Generator) -> torch.Tensor:
    """image weight * x + frost weight * a random crop of one of five frost textures.

    params = (image weight, frost weight, texture scale): CIFAR shrinks the textures to 0.2 first.
    """
    image_weight, frost_weight, texture_scale = params
    n, _, height, width = x.shape
    textures = [ops.resize_linear(t[None].to(x.device, x.dtype) / 255, texture_scale)[0] if texture_scale != 1
                else t.to(x.device, x.dtype) / 255 for t in frost_textures()]
    choice = integers((n,), 0, len(textures), generator, torch.device("cpu")).tolist()
    crops = []
    for i, k in enumerate(choice):
        texture = textures[k]
        top = int(integers((1,), 0, texture.shape[1] - height, generator, torch.device("cpu")))
        left = int(integers((1,), 0, texture.shape[2] - width, generator, torch.device("cpu")))
        crops.append(texture[:, top:top + height, left:left + width])
    return (image_weight * x + frost_weight * torch.stack(crops)).clamp(0, 1)


def plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Diamond-square height maps (n, size, size) scaled to [0, 1]; size is a power of two.

    As in the reference, each new point is the mean of its four neighbours plus
    wibble * U(-wibble, wibble), the wibble shrinking by `decay` each level (so the noise scale is
    wibble², a quirk kept for fidelity).
    """
    heights = torch.zeros(n, size, size, dtype=like.dtype, device=like.device)
    step, wibble = size, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * uniform(tuple(total.shape), -wibble, wibble, generator, total)

    while step >= 2:
        half = step // 2
        corners = heights[:, 0:size:step, 0:size:step]
        square_total = corners + corners.roll(-1, 1)
        square_total = square_total + square_total.roll(-1, 2)
        heights[:, half:size:step, half:size:step] = wibbled_mean(square_total)
        centres = heights[:, half:size:step, half:size:step]
        corners = heights[:, 0:size:step, 0:size:step]
        row_total = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        heights[:, 0:size:step, half:size:step] = wibbled_mean(row_total)
        col_total = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        heights[:, half:size:step, 0:size:step] = wibbled_mean(col_total)
        step //= 2
        wibble /= decay
    heights = heights - heights.amin((1, 2), keepdim=True)
    return heights / heights.amax((1, 2), keepdim=True)


def fog(x: torch.Tensor, params: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Add strength * a plasma fractal, then rescale so the brightest original value keeps its level."""
    strength, decay = params
    n, _, height, width = x.shape
    size = 2 ** math.ceil(math.log2(max(height, width)))
    cloud = plasma_fractal(n, size, decay, generator, x)[:, None, :height, :width]
    peak = x.amax((1, 2, 3), keepdim=True)
    return ((x + strength * cloud) * peak / (peak + strength)).clamp(0, 1)


def brightness(x: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Raise the HSV value by `shift`."""
    hsv = ops.rgb_to_hsv(x)
    hsv = torch.stack([hsv[:, 0], hsv[:, 1], (hsv[:, 2] + shift).clamp(0, 1)], 1)
    return ops.hsv_to_rgb(hsv).clamp(0, 1)
