"""The 19 corruptions of CIFAR-10-C by name, and the one function that applies any of them."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import ConfigError
from ..registry import Registry
from . import blur, digital, noise, spatter, weather
from ..data.loader import stream_seed
from .ops import rgb_to_gray, truncate_to_uint8
from .tables import TABLES, table_for


@dataclass(frozen=True)
class Corruption:
    name: str
    group: str
    benchmark: bool
    apply: Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]


_ALL = (
    Corruption("gaussian_noise", "noise", True, noise.gaussian_noise),
    Corruption("shot_noise", "noise", True, noise.shot_noise),
    Corruption("impulse_noise", "noise", True, noise.impulse_noise),
    Corruption("defocus_blur", "blur", True, blur.defocus_blur),
    Corruption("glass_blur", "blur", True, blur.glass_blur),
    Corruption("motion_blur", "blur", True, blur.motion_blur),
    Corruption("zoom_blur", "blur", True, blur.zoom_blur),
    Corruption("snow", "weather", True, weather.snow),
    Corruption("frost", "weather", True, weather.frost),
    Corruption("fog", "weather", True, weather.fog),
    Corruption("brightness", "weather", True, weather.brightness),
    Corruption("contrast", "digital", True, digital.contrast),
    Corruption("elastic_transform", "digital", True, digital.elastic_transform),
    Corruption("pixelate", "digital", True, digital.pixelate),
    Corruption("jpeg_compression", "digital", True, digital.jpeg_compression),
    Corruption("speckle_noise", "noise", False, noise.speckle_noise),
    Corruption("gaussian_blur", "blur", False, blur.gaussian_blur),
    Corruption("spatter", "weather", False, spatter.spatter),
    Corruption("saturate", "digital", False, digital.saturate),
)
CORRUPTIONS: Registry[Corruption] = Registry("corruption")
for _corruption in _ALL:
    CORRUPTIONS.add(_corruption.name, _corruption)
BENCHMARK = tuple(c.name for c in _ALL if c.benchmark)
EXTRA = tuple(c.name for c in _ALL if not c.benchmark)
SEVERITIES = (1, 2, 3, 4, 5)
# Raised whenever a change alters the images a seed gives; evaluation results record it, so
# results stored by older code are measured again rather than mixed with new ones.
# 3: glass blur copies pixels as the reference's NumPy "swap" does, ImageMagick's 8-bit truncation in
# motion blur and snow, spatter's liquid layer in float64, chunk seeds from the corruption's name.
GENERATOR_VERSION = 3


def get_corruption(name: str) -> Corruption:
    return CORRUPTIONS.get(name)


def corrupt(x: torch.Tensor, name: str, severity: int, *, generator: torch.Generator | None = None,
            table: str | None = None) -> torch.Tensor:
    """Corrupt a batch of images (N, C, H, W) in [0, 1]; returns float images in [0, 1].

    The corruptions are defined on RGB images. Grey images (C = 1) are corrupted as RGB images with
    three equal channels and turned back to grey with the luma weights (cv2's RGB2GRAY).

    table: "cifar" or "imagenet" severity parameters; by default chosen from the image size.
    generator: a CPU generator for every random draw (a fresh one seeded 0 when None).
    """
    corruption = get_corruption(name)
    if severity not in SEVERITIES:
        raise ConfigError(f"severity {severity!r} is not one of {SEVERITIES}")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ConfigError("corruptions take RGB or grey batches of shape (N, 3 or 1, H, W); "
                          f"got shape {tuple(x.shape)}")
    table = table or table_for(*x.shape[-2:])
    if table not in TABLES:
        raise ConfigError(f"unknown severity table {table!r}; expected one of {', '.join(TABLES)}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    params = TABLES[table][name][severity - 1]
    with torch.no_grad():
        if x.shape[1] == 1:
            return rgb_to_gray(corruption.apply(x.float().expand(-1, 3, -1, -1), params, generator)).clamp(0, 1)
        return corruption.apply(x.float(), params, generator)


def chunk_seed(seed: int, name: str, severity: int, chunk: int) -> int:
    """Seed of one chunk of a corrupted dataset: fixed by position, so any chunk can be made alone.

    The data loader's seed mixing, with the severity in the epoch's place and the corruption as the
    stream; the stream is a checksum of the corruption's name, so adding a corruption changes no other.
    """
    return (stream_seed(seed, severity, zlib.crc32(name.encode())) + chunk) % (2**63 - 1)


CHUNK = 500


# The benchmarks whose released files are JPEGs: make_tinyimagenet_c.py and make_imagenet_c.py save
# every corrupted image with Pillow at quality 85 (CIFAR-10-C is stored as raw arrays).
JPEG_STORED = {"tinyimagenet": 85, "imagenet": 85}


def corrupt_uint8(images: torch.Tensor, name: str, severity: int, *, seed: int = 0, table: str | None = None,
                  start: int = 0) -> torch.Tensor:
    """Corrupt uint8 images (N, 3, H, W) the way the released files store them (8-bit, truncated;
    then, for Tiny-ImageNet-C and ImageNet-C, a JPEG at quality 85).

    Randomness is drawn per chunk of CHUNK images counted from `start` (which must be a multiple of
    CHUNK), so the result does not depend on how a dataset is split into calls.
    """
    if start % CHUNK:
        raise ValueError(f"start {start} must be a multiple of {CHUNK}")
    table = table or table_for(*images.shape[-2:])
    out = torch.empty_like(images)
    for offset in range(0, images.shape[0], CHUNK):
        generator = torch.Generator().manual_seed(chunk_seed(seed, name, severity, (start + offset) // CHUNK))
        batch = images[offset:offset + CHUNK].float() / 255
        stored = truncate_to_uint8(corrupt(batch, name, severity, generator=generator, table=table))
        if table in JPEG_STORED:
            stored = torch.round(digital.jpeg_compression(stored.float() / 255, JPEG_STORED[table], generator) * 255)
        out[offset:offset + CHUNK] = stored.to(torch.uint8)
    return out
