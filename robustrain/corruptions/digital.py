"""Digital corruptions: contrast, elastic transform, pixelate, JPEG (benchmark) and saturate (extra)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from . import ops
from .random import uniform


def contrast(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Pull every channel towards its own mean: (x - mean) * factor + mean."""
    mean = x.mean((2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def saturate(x: torch.Tensor, params: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """HSV saturation * scale + shift."""
    scale, shift = params
    hsv = ops.rgb_to_hsv(x)
    hsv = torch.stack([hsv[:, 0], (hsv[:, 1] * scale + shift).clamp(0, 1), hsv[:, 2]], 1)
    return ops.hsv_to_rgb(hsv).clamp(0, 1)


def pixelate(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Pillow BOX resize to int(size * factor), then back."""
    height, width = x.shape[-2:]
    small = ops.box_resize(x, (int(height * factor), int(width * factor)))
    return ops.box_resize(small, (height, width))


def jpeg_compression(x: torch.Tensor, quality: int, generator: torch.Generator) -> torch.Tensor:
    """Encode and decode each image (RGB or grey) with Pillow's JPEG at `quality` (the reference does
    exactly this)."""
    pixels = torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    mode = "RGB" if pixels.shape[-1] == 3 else "L"
    decoded = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image if mode == "RGB" else image[..., 0]).save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as jpeg:
            decoded.append(np.asarray(jpeg.convert(mode)).reshape(image.shape))
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(x) / 255


def affine_from_points(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """cv2.getAffineTransform for batches: the (N, 2, 3) matrices taking 3 source points to 3 targets."""
    ones = torch.ones(*source.shape[:-1], 1, dtype=source.dtype)
    return torch.linalg.solve(torch.cat([source, ones], -1), target).transpose(1, 2)


def elastic_transform(x: torch.Tensor, params: tuple[float, float, float], generator: torch.Generator) -> torch.Tensor:
    """A random affine warp (three points moved by up to `affine` pixels), then a smooth random
    displacement field: uniform noise blurred by `sigma`, times `alpha`.

    params = (alpha, sigma, affine) in pixels. Borders: the warp mirrors about the edge pixel
    (cv2.warpAffine's BORDER_REFLECT_101), the displacement reflects including it (scipy "reflect").
    """
    alpha, sigma, affine = params
    n, _, height, width = x.shape
    centre = torch.tensor([height // 2, width // 2], dtype=torch.float64)
    half_side = min(height, width) // 3
    points = torch.stack([centre + half_side, torch.stack([centre[0] + half_side, centre[1] - half_side]),
                          centre - half_side]).expand(n, 3, 2)
    moved = points + uniform((n, 3, 2), -affine, affine, generator, points)
    forward = affine_from_points(points, moved)
    linear, shift = forward[:, :, :2], forward[:, :, 2:]
    inverse_linear = torch.linalg.inv(linear)
    inverse = torch.cat([inverse_linear, -inverse_linear @ shift], 2).to(x)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=x.dtype, device=x.device),
                                torch.arange(width, dtype=x.dtype, device=x.device), indexing="ij")
    grid = torch.stack([cols, rows, torch.ones_like(rows)]).reshape(3, -1)
    source = (inverse @ grid).reshape(n, 2, height, width)
    warped = ops.sample_bilinear(x, source[:, 1], source[:, 0], "mirror")

    def displacement() -> torch.Tensor:
        noise = uniform((n, 1, height, width), -1, 1, generator, x)
        return ops.gaussian_blur(noise, sigma, border="reflect", truncate=3.0)[:, 0] * alpha

    shift_cols = displacement()
    shift_rows = displacement()
    return ops.sample_bilinear(warped, rows + shift_rows, cols + shift_cols, "reflect").clamp(0, 1)
