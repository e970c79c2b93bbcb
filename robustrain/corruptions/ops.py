"""Batched image operations the corruptions are built from: borders, filters, sampling, resizing, colour.

Images are float tensors (N, C, H, W) in [0, 1]. Each operation names the library function of the
reference generator (make_cifar_c.py) that it reproduces, because the border rules and rounding of
those functions are what make two corruption sets comparable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..borders import BORDERS, fold_index
from ..host import to_device


def pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, border: str) -> torch.Tensor:
    height, width = x.shape[-2:]
    rows = fold_index(torch.arange(-top, height + bottom, device=x.device), height, border)
    cols = fold_index(torch.arange(-left, width + right, device=x.device), width, border)
    return x.index_select(-2, rows).index_select(-1, cols)


def filter2d(x: torch.Tensor, kernel: torch.Tensor, border: str) -> torch.Tensor:
    """Correlate every channel with a 2-D kernel (cv2.filter2D; odd kernel sizes, anchor at the centre)."""
    kh, kw = kernel.shape
    height, width = x.shape[-2:]
    padded = pad(x, kh // 2, kh // 2, kw // 2, kw // 2, border)
    taps = kernel.nonzero().tolist()
    if len(taps) <= SHIFTED_SUM_TAPS:
        # A sum of shifted copies beats PyTorch's depthwise convolution on the CPU by several times
        # for the few-tap kernels here (separable Gaussians, small disks).
        out = torch.zeros_like(x)
        for i, j in taps:
            out += float(kernel[i, j]) * padded[..., i:i + height, j:j + width]
        return out
    channels = x.shape[1]
    weight = kernel.to(x).expand(channels, 1, kh, kw)
    return F.conv2d(padded, weight, groups=channels)


SHIFTED_SUM_TAPS = 49


def gaussian_kernel1d(sigma: float, truncate: float) -> torch.Tensor:
    """scipy.ndimage's Gaussian: radius int(truncate * sigma + 0.5), weights normalized to sum 1."""
    if sigma <= 0:
        return torch.ones(1, dtype=torch.float64)
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * offsets**2 / sigma**2)
    return weights / weights.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, *, border: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian over the two spatial axes (defaults: border "nearest", truncate 4)."""
    kernel = gaussian_kernel1d(sigma, truncate)
    rows = filter2d(x, kernel[:, None], border)
    return filter2d(rows, kernel[None, :], border)


def box_blur3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)): the 3x3 mean with cv2's default border (BORDER_REFLECT_101)."""
    return filter2d(x, torch.full((3, 3), 1 / 9, dtype=torch.float64), "mirror")


def gather_pixels(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x[n, :, rows[n, i, j], cols[n, i, j]] for integer index maps of shape (N, H', W')."""
    n, channels, _, width = x.shape
    flat = (rows * width + cols).reshape(n, 1, -1).expand(n, channels, -1)
    return x.reshape(n, channels, -1).gather(2, flat).reshape(n, channels, *rows.shape[1:])


def sample_bilinear(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, border: str) -> torch.Tensor:
    """Bilinear samples at real-valued pixel coordinates (N, H', W'); outside pixels follow `border`.

    This is scipy.ndimage.map_coordinates(order=1) and cv2.remap/warpAffine(INTER_LINEAR): a pixel's
    value sits at its integer coordinate. grid_sample's reflection about the pixel edges
    (align_corners=False) is "reflect", about the outer pixel centres (align_corners=True) "mirror".
    """
    height, width = x.shape[-2:]
    if border == "reflect":
        grid = torch.stack([(2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1], -1)
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
    if border not in ("mirror", "nearest"):
        raise ValueError(f"border {border!r} is not one of {BORDERS}")
    grid = torch.stack([2 * cols / max(width - 1, 1) - 1, 2 * rows / max(height - 1, 1) - 1], -1)
    padding = "reflection" if border == "mirror" else "border"
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=True)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by `factor` and crop back to the input size (the reference's clipped_zoom).

    The centre crop of ceil(size / factor) pixels is resized with scipy.ndimage.zoom(order=1), whose
    output has round(crop * factor) pixels and whose grid maps corner to corner (align_corners).
    """
    height, width = x.shape[-2:]
    crop_h, crop_w = math.ceil(height / factor), math.ceil(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = x[..., top:top + crop_h, left:left + crop_w]
    size = (round(crop_h * factor), round(crop_w * factor))
    zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    trim_h, trim_w = (size[0] - height) // 2, (size[1] - width) // 2
    return zoomed[..., trim_h:trim_h + height, trim_w:trim_w + width]


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's MotionBlurImage (used through Wand by the reference), one angle per image.

    A one-sided Gaussian of width 2 ceil(radius) + 1 taps, k_i ∝ exp(-i² / 2σ²), averages the pixels
    at integer offsets round(i (cos θ, sin θ)) along the motion direction; pixels past the border
    repeat the edge (ImageMagick's default virtual-pixel rule).
    """
    n, _, height, width = x.shape
    taps = 2 * math.ceil(radius) + 1
    steps = torch.arange(taps, dtype=torch.float64)
    kernel = torch.exp(-steps**2 / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).tolist()
    theta = torch.deg2rad(angles_deg.double().cpu())
    # ImageMagick rounds with ceil(t - 0.5)
    row_steps = torch.ceil(steps[:, None] * torch.sin(theta)[None] - 0.5).long().to(x.device)
    col_steps = torch.ceil(steps[:, None] * torch.cos(theta)[None] - 0.5).long().to(x.device)
    base_rows = torch.arange(height, device=x.device)
    base_cols = torch.arange(width, device=x.device)
    out = torch.zeros_like(x)
    for i, weight in enumerate(kernel):
        rows = (base_rows[None, :] + row_steps[i][:, None]).clamp(0, height - 1)
        cols = (base_cols[None, :] + col_steps[i][:, None]).clamp(0, width - 1)
        grid_rows = rows[:, :, None].expand(n, height, width)
        grid_cols = cols[:, None, :].expand(n, height, width)
        out += weight * gather_pixels(x, grid_rows, grid_cols)
    return out


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest of 256 levels, as an 8-bit image file between two steps does."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def imagemagick_8bit(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit value ImageMagick (Q16) writes for x in [0, 1], back in [0, 1].

    ImageMagick stores the blurred pixel as a 16-bit quantum (rounded) and its PNG writer keeps
    quantum // 257: a truncation, not a rounding. Checked against Wand's motion blur output
    (tests/data/motion_blur_reference.npz): every value equal.
    """
    quantum = torch.round(x.double().clamp(0, 1) * 65535)
    return (torch.div(quantum, 257, rounding_mode="floor") / 255).to(x.dtype)


def truncate_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """np.uint8(x * 255) of values in [0, 1]: truncation, which is how the reference stores images."""
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def box_resize_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out, in) weights of Pillow's BOX resampling along one axis, in Pillow's 22-bit fixed point.

    Pillow centres output pixel i at (i + 0.5) * scale in input coordinates, widens the filter's
    support by the scale when shrinking, weighs input pixel j by box((j - centre + 0.5) / scale)
    with box(t) = 1 on (-0.5, 0.5], normalizes, and rounds each weight to an integer of 2^22.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        centre = (i + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), in_size)
        for j in range(first, last):
            t = (j - centre + 0.5) / filter_scale
            weights[i, j] = 1.0 if -0.5 < t <= 0.5 else 0.0
        weights[i] /= weights[i].sum()
    return torch.floor(weights * 2**PILLOW_PRECISION_BITS + 0.5)


PILLOW_PRECISION_BITS = 22


def box_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow's Image.resize(size, BOX) on 8-bit images, bit for bit: a horizontal pass, then a
    vertical one, each summing integer levels with fixed-point weights and rounding back to 8 bits."""
    height, width = x.shape[-2:]
    horizontal = box_resize_matrix(width, size[1]).to(x.device)
    vertical = box_resize_matrix(height, size[0]).to(x.device)
    half = 2 ** (PILLOW_PRECISION_BITS - 1)

    def to_levels(total: torch.Tensor) -> torch.Tensor:
        return torch.floor((total + half) / 2**PILLOW_PRECISION_BITS).clamp(0, 255)

    levels = torch.round(x.double().clamp(0, 1) * 255)
    wide = to_levels(torch.einsum("nchw,vw->nchv", levels, horizontal))
    return (to_levels(torch.einsum("nchw,uh->ncuw", wide, vertical)) / 255).to(x.dtype)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv on (N, 3, H, W): hue in [0, 1); ties between maxima go to the later channel."""
    red, green, blue = x.unbind(1)
    value = x.amax(1)
    delta = value - x.amin(1)
    safe_delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    saturation = torch.where(delta == 0, torch.zeros_like(delta), delta / torch.where(value == 0, 1, value))
    hue = (green - blue) / safe_delta
    hue = torch.where(green == value, 2 + (blue - red) / safe_delta, hue)
    hue = torch.where(blue == value, 4 + (red - green) / safe_delta, hue)
    hue = torch.where(delta == 0, torch.zeros_like(hue), (hue / 6).remainder(1))
    return torch.stack([hue, saturation, value], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb on (N, 3, H, W)."""
    hue, saturation, value = x.unbind(1)
    sector = torch.floor(hue * 6)
    fraction = hue * 6 - sector
    sector = sector.long().remainder(6)
    p = value * (1 - saturation)
    q = value * (1 - fraction * saturation)
    t = value * (1 - (1 - fraction) * saturation)
    table = torch.stack([
        torch.stack([value, t, p], 1), torch.stack([q, value, p], 1), torch.stack([p, value, t], 1),
        torch.stack([p, q, value], 1), torch.stack([t, p, value], 1), torch.stack([value, p, q], 1),
    ], 0)
    index = sector[None, :, None].expand(1, *table.shape[1:])
    return table.gather(0, index)[0]


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(RGB2GRAY): 0.299 R + 0.587 G + 0.114 B, keeping a channel axis."""
    weights = to_device(torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype), x)  # queued: training views call it
    return torch.einsum("nchw,c->nhw", x, weights).unsqueeze(1)


def resize_linear(x: torch.Tensor, scale: float) -> torch.Tensor:
    """cv2.resize(x, (0, 0), fx=scale, fy=scale) with INTER_LINEAR on 8-bit images.

    cv2 rounds the output size, maps output pixel i to input (i + 0.5) / scale - 0.5 and clamps at
    the borders; the result is stored as 8-bit.
    """
    n, _, height, width = x.shape
    out_h, out_w = round(height * scale), round(width * scale)
    rows = ((torch.arange(out_h, dtype=x.dtype, device=x.device) + 0.5) / scale - 0.5).clamp(0, height - 1)
    cols = ((torch.arange(out_w, dtype=x.dtype, device=x.device) + 0.5) / scale - 0.5).clamp(0, width - 1)
    grid_rows = rows[None, :, None].expand(n, out_h, out_w)
    grid_cols = cols[None, None, :].expand(n, out_h, out_w)
    return quantize(sample_bilinear(x, grid_rows, grid_cols, "nearest"))
