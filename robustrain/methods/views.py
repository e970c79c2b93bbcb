"""Corrupted training views: batched tensor ops on [0, 1] images, each drawing its randomness per
image from a CPU generator (so a seed gives the same views on every device).

The four views of Auxiliary Training's official code, and any corruption of the corruption
module at a fixed severity ("fog/3"):
- "noise": additive Gaussian noise of std 20/255, **clipped** to [0, 1] (the official code adds
  in uint8 and so wraps around modulo 256, which turns dark pixels bright; not reproduced);
- "blur": Gaussian blur of sigma 1 (PIL's GaussianBlur(radius=1.0), a Gaussian of std 1);
- "color": brightness, contrast and saturation each scaled by a factor uniform in [0.5, 1.5] per
  image (torchvision's ColorJitter(0.5, 0.5, 0.5)), in an order drawn per batch;
- "rotate": a rotation by an angle uniform in [-30°, 30°] per image, zero fill, nearest pixel
  (torchvision's RandomRotation(30) defaults).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..corruptions import CORRUPTIONS, SEVERITIES, corrupt
from ..corruptions.ops import gaussian_blur, rgb_to_gray
from ..errors import ConfigError
from ..host import to_device

View = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(n: int, low: float, high: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return to_device(low + (high - low) * torch.rand(n, generator=generator), like).view(-1, 1, 1, 1)


def noise_view(x: torch.Tensor, generator: torch.Generator, std: float = 20 / 255) -> torch.Tensor:
    return (x + std * to_device(torch.randn(x.shape, generator=generator), x)).clamp(0, 1)


def blur_view(x: torch.Tensor, generator: torch.Generator, sigma: float = 1.0) -> torch.Tensor:
    return gaussian_blur(x, sigma).clamp(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return rgb_to_gray(x) if x.shape[1] == 3 else x


def color_view(x: torch.Tensor, generator: torch.Generator, strength: float = 0.5) -> torch.Tensor:
    factors = [_uniform(len(x), 1 - strength, 1 + strength, generator, x) for _ in range(3)]
    order = torch.randperm(3, generator=generator).tolist()
    for op in order:
        f = factors[op]
        if op == 0:  # brightness: blend with black
            x = x * f
        elif op == 1:  # contrast: blend with the image's mean grey level
            x = f * x + (1 - f) * _gray(x).mean((1, 2, 3), keepdim=True)
        else:  # saturation: blend with the grey image
            x = f * x + (1 - f) * _gray(x)
        x = x.clamp(0, 1)
    return x


def rotate_view(x: torch.Tensor, generator: torch.Generator, degrees: float = 30.0) -> torch.Tensor:
    angles = _uniform(len(x), -degrees, degrees, generator, x).flatten() * (math.pi / 180)
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


BUILT_IN: dict[str, View] = {"noise": noise_view, "blur": blur_view, "color": color_view, "rotate": rotate_view}


def make_view(spec: str) -> View:
    """A view by name: one of the built-in views, or "<corruption>/<severity>" (e.g. "fog/3")."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    name, _, severity = spec.partition("/")
    if name in CORRUPTIONS and severity.isdigit() and int(severity) in SEVERITIES:
        return lambda x, generator: corrupt(x, name, int(severity), generator=generator)
    if name in CORRUPTIONS:
        raise ConfigError(f"view {spec!r} needs a severity from 1 to 5 after the corruption's name, e.g. '{name}/3'.")
    raise ConfigError(f"unknown view {spec!r}; expected one of {sorted(BUILT_IN)} or a corruption with a severity "
                      f"such as 'fog/3' (corruptions: {', '.join(CORRUPTIONS)}).")
