"""AugMix's augmentation operations (Hendrycks et al., 2020) as batched tensor ops.

Each op takes images holding 8-bit values (floats 0..255, N x C x H x W) and per-image
parameters, and returns 8-bit values, as the reference applies PIL operations to uint8 images:
- autocontrast, equalize, posterize, solarize: PIL's ImageOps algorithms, per image and channel
  (bit-exact: tests compare with Pillow);
- rotate, shear_x, shear_y, translate_x, translate_y: PIL's affine transform with bilinear
  sampling of pixel centres, edge pixels repeated, black fill outside and truncation to 8 bits
  (equal to Pillow but for a rare value one level off where float rounding straddles an integer).
`sample_ops` draws an op and its parameters per image the way the reference's `augmentations`
list and `sample_level` do (level uniform in [0.1, severity), random sign for geometric ops).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..host import to_device

OPS = ("autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y", "translate_x",
       "translate_y")


def autocontrast(v: torch.Tensor) -> torch.Tensor:
    """Stretch each channel's [min, max] to [0, 255]: lut(i) = int(i · 255/(hi-lo) - lo · 255/(hi-lo))."""
    flat = v.flatten(2).double()
    lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    stretch = hi > lo
    scale = torch.where(stretch, torch.full_like(hi, 255.0) / (hi - lo).clamp_min(1), torch.ones_like(hi))
    offset = torch.where(stretch, -lo * scale, torch.zeros_like(lo))
    return (flat * scale + offset).floor().clamp(0, 255).view_as(v).to(v.dtype)


def equalize(v: torch.Tensor) -> torch.Tensor:
    """PIL's histogram equalisation per channel: step = (pixels - count of the last used level) // 255,
    lut(i) = (step // 2 + pixels below i) // step; the identity where step is 0."""
    n, c = v.shape[:2]
    levels = v.flatten(2).long()
    histogram = torch.zeros(n, c, 256, dtype=torch.long, device=v.device).scatter_add_(
        2, levels, torch.ones_like(levels))
    last_used = 255 - (histogram.flip(2) > 0).long().argmax(2, keepdim=True)
    step = (levels.shape[2] - histogram.gather(2, last_used)) // 255
    below = histogram.cumsum(2) - histogram
    lut = (step // 2 + below) // step.clamp_min(1)
    lut = torch.where(step > 0, lut, torch.arange(256, device=v.device).expand_as(lut)).clamp(0, 255)
    return lut.gather(2, levels).view_as(v).to(v.dtype)


def posterize(v: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the `bits` high bits of each value."""
    step = to_device((2 ** (8 - bits)).view(-1, 1, 1, 1), v)
    return torch.div(v, step, rounding_mode="floor") * step


def solarize(v: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the values at or above the threshold."""
    return torch.where(v >= to_device(threshold.view(-1, 1, 1, 1), v), 255 - v, v)


def affine(v: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """PIL's Image.transform(AFFINE, (a, b, c, d, e, f), BILINEAR): output pixel (x, y) samples the
    input at (a x + b y + c, d x + e y + f) in pixel-edge coordinates (centres at i + 0.5), black
    outside. matrix: (N, 6)."""
    n, _, h, w = v.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=v.dtype, device=v.device) + 0.5,
                            torch.arange(w, dtype=v.dtype, device=v.device) + 0.5, indexing="ij")
    m = to_device(matrix, v).view(n, 6, 1, 1)
    x_in = m[:, 0] * xs + m[:, 1] * ys + m[:, 2]
    y_in = m[:, 3] * xs + m[:, 4] * ys + m[:, 5]
    grid = torch.stack([2 * x_in / w - 1, 2 * y_in / h - 1], dim=-1)
    # Pillow fills a pixel whose sample point falls outside the image and otherwise interpolates
    # with the edge pixels repeated (never blending in the fill colour).
    inside = ((x_in >= 0) & (x_in < w) & (y_in >= 0) & (y_in < h)).unsqueeze(1)
    sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(inside, sampled.floor().clamp(0, 255), torch.zeros_like(sampled))


def rotation_matrix(degrees: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """PIL's Image.rotate(degrees) about the image centre (counter-clockwise for positive angles)."""
    a = -degrees.double() * math.pi / 180
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = w / 2, h / 2
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return torch.stack([cos, sin, c, -sin, cos, f], 1)


def apply_op(name: str, v: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """One op with its per-image parameter (bits, threshold, degrees, shear or shift)."""
    n, _, h, w = v.shape
    ones, zeros = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    m = magnitude.double().cpu()
    if name == "autocontrast":
        return autocontrast(v)
    if name == "equalize":
        return equalize(v)
    if name == "posterize":
        return posterize(v, magnitude.long())
    if name == "solarize":
        return solarize(v, magnitude)
    if name == "rotate":
        matrix = rotation_matrix(m, h, w)
    elif name == "shear_x":
        matrix = torch.stack([ones, m, zeros, zeros, ones, zeros], 1)
    elif name == "shear_y":
        matrix = torch.stack([ones, zeros, zeros, m, ones, zeros], 1)
    elif name == "translate_x":
        matrix = torch.stack([ones, zeros, m, zeros, ones, zeros], 1)
    elif name == "translate_y":
        matrix = torch.stack([ones, zeros, zeros, zeros, ones, m], 1)
    else:
        raise ValueError(f"unknown AugMix op {name!r}; expected one of {OPS}.")
    return affine(v, matrix)


def magnitudes(name: str, n: int, severity: float, size: int, generator: torch.Generator) -> torch.Tensor:
    """The reference's parameters for `n` images: level ~ U(0.1, severity), scaled per op."""
    level = 0.1 + (severity - 0.1) * torch.rand(n, generator=generator, dtype=torch.float64)
    sign = torch.where(torch.rand(n, generator=generator) > 0.5, -1.0, 1.0).double()
    if name == "posterize":
        return 4 - (level * 4 / 10).floor()
    if name == "solarize":
        return 256 - (level * 256 / 10).floor()
    if name == "rotate":
        return sign * (level * 30 / 10).floor()
    if name in ("shear_x", "shear_y"):
        return sign * level * 0.3 / 10
    if name in ("translate_x", "translate_y"):
        return sign * (level * (size / 3) / 10).trunc()
    return torch.zeros(n, dtype=torch.float64)


def augment_and_mix(x: torch.Tensor, generator: torch.Generator, *, severity: float = 3, width: int = 3,
                    depth: int = -1, alpha: float = 1.0) -> torch.Tensor:
    """AugMix of a batch of [0, 1] images holding 8-bit values: `width` chains of 1-3 (or `depth`)
    random ops each, mixed with Dirichlet(alpha) weights, then mixed with the original with a
    Beta(alpha, alpha) weight, per image."""
    n = len(x)
    v = (x * 255).round()
    weights, m = _dirichlet(n, width, alpha, generator), _beta(n, alpha, generator)
    mix = torch.zeros_like(x)
    for chain in range(width):
        steps = torch.full((n,), depth) if depth > 0 else torch.randint(1, 4, (n,), generator=generator)
        chained = v.clone()
        for step in range(int(steps.max())):
            ops = torch.randint(len(OPS), (n,), generator=generator)
            for index, name in enumerate(OPS):
                # which images take this op is known on the host (CPU draws); the rows travel queued
                rows = ((ops == index) & (steps > step)).nonzero().flatten()
                if len(rows):
                    params = magnitudes(name, len(rows), severity, x.shape[-1], generator)
                    on_device = to_device(rows, x.device)
                    chained[on_device] = apply_op(name, chained[on_device], params)
        mix += to_device(weights[:, chain], x).view(-1, 1, 1, 1) * chained / 255
    m = to_device(m, x).view(-1, 1, 1, 1)
    return (1 - m) * x + m * mix


def _gamma(shape: tuple[int, ...], concentration: float, generator: torch.Generator) -> torch.Tensor:
    # torch.distributions draws from the global generator; this is the sampler it uses, seeded by ours.
    return torch._standard_gamma(torch.full(shape, float(concentration), dtype=torch.float64), generator=generator)


def _dirichlet(n: int, width: int, alpha: float, generator: torch.Generator) -> torch.Tensor:
    draws = _gamma((n, width), alpha, generator)
    return draws / draws.sum(1, keepdim=True)


def _beta(n: int, alpha: float, generator: torch.Generator) -> torch.Tensor:
    a, b = _gamma((n,), alpha, generator), _gamma((n,), alpha, generator)
    return a / (a + b)
