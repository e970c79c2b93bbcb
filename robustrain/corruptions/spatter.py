"""Spatter (extra corruption): water drops (severities with mode 0) or mud (mode 1).

The water branch of the reference is a chain of OpenCV calls on an 8-bit liquid layer: Canny edges,
a distance transform, histogram equalization, an emboss filter and blurs. Each is rebuilt here in
batched tensor form with OpenCV's rounding; see `canny`, `chamfer_distance` and `equalize_hist`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from . import ops
from .random import normal

WATER_RGB = (175 / 255, 238 / 255, 238 / 255)
MUD_RGB = (63 / 255, 42 / 255, 20 / 255)
EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
TAN_22_5 = 0.4142135623730950488


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel derivatives along columns and rows with replicated borders (as cv2.Canny computes them)."""
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    along_cols = ops.filter2d(x, smooth[:, None] * diff[None, :], "nearest")
    along_rows = ops.filter2d(x, diff[:, None] * smooth[None, :], "nearest")
    return along_cols, along_rows


def canny(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """cv2.Canny(x * 255, low, high) with L1 gradient magnitude: boolean edge map (N, 1, H, W).

    Non-maximum suppression compares each pixel with its two neighbours across the edge (strictly
    greater on one side, greater or equal on the other, as OpenCV does); hysteresis keeps weak edges
    8-connected to strong ones.
    """
    dx, dy = sobel(x * 255)
    magnitude = dx.abs() + dy.abs()
    padded = F.pad(magnitude, (1, 1, 1, 1))

    def neighbour(drow: int, dcol: int) -> torch.Tensor:
        height, width = magnitude.shape[-2:]
        return padded[..., 1 + drow:1 + drow + height, 1 + dcol:1 + dcol + width]

    horizontal = dy.abs() < dx.abs() * TAN_22_5
    vertical = dy.abs() > dx.abs() * (TAN_22_5 + 2)
    opposite_signs = (dx * dy) < 0
    keep_horizontal = (magnitude > neighbour(0, -1)) & (magnitude >= neighbour(0, 1))
    keep_vertical = (magnitude > neighbour(-1, 0)) & (magnitude >= neighbour(1, 0))
    keep_anti = (magnitude > neighbour(-1, 1)) & (magnitude > neighbour(1, -1))
    keep_main = (magnitude > neighbour(-1, -1)) & (magnitude > neighbour(1, 1))
    keep_diagonal = torch.where(opposite_signs, keep_anti, keep_main)
    maximum = torch.where(horizontal, keep_horizontal, torch.where(vertical, keep_vertical, keep_diagonal))
    weak = maximum & (magnitude > low)
    edges = weak & (magnitude > high)
    while True:
        grown = weak & (F.max_pool2d(edges.to(x.dtype), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            return edges
        edges = grown


STEPS_5X5 = {  # cv2's DIST_L2 5x5 mask: move -> cost
    1.0: [(-1, 0), (1, 0), (0, -1), (0, 1)],
    1.4: [(-1, -1), (-1, 1), (1, -1), (1, 1)],
    2.1969: [(dr, dc) for dr in (-2, -1, 1, 2) for dc in (-2, -1, 1, 2) if abs(dr) != abs(dc)],
}


def chamfer_distance(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """cv2.distanceTransform(DIST_L2, 5) capped at `cap`: distance to the nearest `zero` pixel.

    OpenCV's 5x5 mask weighs steps by 1 (edge), 1.4 (diagonal) and 2.1969 (knight's move); the
    distance is the cheapest path of such steps, found here by relaxation until nothing changes.
    Distances are held at cap + 1 at most, which is all the cap needs and ends the relaxation early.
    """
    distance = torch.where(zero, 0.0, float("inf")).float()
    height, width = zero.shape[-2:]
    while True:
        padded = F.pad(distance, (2, 2, 2, 2), value=float("inf"))
        updated = distance
        for cost, moves in STEPS_5X5.items():
            nearest = functools.reduce(torch.minimum, [padded[..., 2 + dr:2 + dr + height, 2 + dc:2 + dc + width]
                                                       for dr, dc in moves])
            updated = torch.minimum(updated, nearest + cost)
        updated = updated.clamp(max=cap + 1)
        if torch.equal(updated, distance):
            return distance.clamp(max=cap)
        distance = updated


def equalize_hist(x: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image on integer values 0..255 (float tensor (N, 1, H, W))."""
    n = x.shape[0]
    values = x.reshape(n, -1).long()
    counts = torch.zeros(n, 256, dtype=torch.float64, device=x.device).scatter_add_(
        1, values, torch.ones_like(values, dtype=torch.float64))
    cumulative = counts.cumsum(1)
    first = (counts > 0).double().argmax(1, keepdim=True)
    first_count = counts.gather(1, first)
    total = values.shape[1]
    scale = 255 / (total - first_count).clamp(min=1)
    lut = torch.round((cumulative - first_count) * scale).clamp(0, 255)
    constant = first_count == total
    lut = torch.where(constant, first.double().expand(-1, 256), lut)
    return lut.gather(1, values).reshape(x.shape).to(x.dtype)


def water(x: torch.Tensor, liquid: torch.Tensor, strength: float) -> torch.Tensor:
    """Pale turquoise drops whose shading comes from an embossed distance-to-edge map."""
    liquid8 = ops.truncate_to_uint8(liquid).to(x.dtype)
    distance = chamfer_distance(canny(liquid8 / 255, 50, 150), 20.0)
    distance = ops.box_blur3(distance).floor()
    distance = equalize_hist(distance)
    distance = torch.round(ops.filter2d(distance, EMBOSS, "mirror")).clamp(0, 255)
    distance = torch.round(ops.box_blur3(distance))
    shade = liquid8 * distance
    peak = shade.amax((2, 3), keepdim=True)
    shade = torch.where(peak > 0, shade / torch.where(peak > 0, peak, 1), torch.zeros_like(shade)) * strength
    colour = torch.tensor(WATER_RGB, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x + shade.to(x.dtype) * colour).clamp(0, 1)


def mud(x: torch.Tensor, liquid: torch.Tensor, threshold: float, sigma: float) -> torch.Tensor:
    """Opaque brown where the blurred liquid mask is at least 0.8."""
    mask = ops.gaussian_blur((liquid > threshold).to(x.dtype), sigma)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    colour = torch.tensor(MUD_RGB, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x * (1 - mask) + colour * mask).clamp(0, 1)


def spatter(x: torch.Tensor, params: tuple[float, ...], generator: torch.Generator) -> torch.Tensor:
    """params = (liquid mean, liquid std, liquid blur sigma, threshold, strength or mud sigma, mode)."""
    mean, std, blur_sigma, threshold, strength, mode = params
    n, _, height, width = x.shape
    # float64 as in the reference: the water layer is truncated to 8 bits next, and float32 rounding
    # moves values across a level often enough to change Canny's edges (up to 119 levels in an image)
    liquid = ops.gaussian_blur(normal((n, 1, height, width), mean, std, generator, x.double()), blur_sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mode == 0:
        return water(x, liquid, strength)
    return mud(x, liquid, threshold, strength)
