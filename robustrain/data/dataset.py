"""The one in-memory form every dataset loader returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ..errors import DataError
from .files import FileImages


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class ImageDataset:
    """uint8 images (N, C, H, W), int64 labels (N,), class names and metadata. The images are a
    tensor, or `FileImages` (decoded when read) for a streamed split."""

    images: torch.Tensor | FileImages
    labels: torch.Tensor
    classes: tuple[str, ...]
    info: DatasetInfo
    split: str

    def __len__(self) -> int:
        return self.labels.shape[0]


def make_dataset(name: str, split: str, images: torch.Tensor, labels: torch.Tensor, classes,
                 mean=None, std=None) -> ImageDataset:
    """Check `images`/`labels` and wrap them; mean/std default to the images' own per-channel statistics."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(f"{name} {split}: images must be uint8 of shape (N, C, H, W), got {images.dtype} "
                        f"{tuple(images.shape)}.")
    labels = labels.to(torch.int64)
    if labels.shape != (images.shape[0],):
        raise DataError(f"{name} {split}: {images.shape[0]} images but labels of shape {tuple(labels.shape)}.")
    classes = tuple(str(c) for c in classes)
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(classes)):
        bad = labels[(labels < 0) | (labels >= len(classes))][0].item()
        raise DataError(f"{name} {split}: label {bad} is out of range; labels must lie in 0..{len(classes) - 1} "
                        f"for {len(classes)} classes.")
    if mean is None or std is None:
        mean, std = channel_stats(images)
    info = DatasetInfo(name=name, num_classes=len(classes), channels=images.shape[1],
                       image_size=(images.shape[2], images.shape[3]), mean=tuple(mean), std=tuple(std))
    return ImageDataset(images=images, labels=labels, classes=classes, info=info, split=split)


def channel_stats(images: torch.Tensor | Iterable[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (n - 1 in the denominator) of uint8 images (N, C, H, W),
    or of every image in an iterable of such batches, on the [0, 1] scale: exact, from each
    channel's histogram of the 256 values, built a few images at a time, so that no float copy
    of the set is ever made."""
    batches = (images[start:start + 256] for start in range(0, images.shape[0], 256)) if torch.is_tensor(images) \
        else images
    counts = None
    for chunk in batches:
        if counts is None:
            counts = torch.zeros(chunk.shape[1], 256, dtype=torch.float64)
        for c in range(chunk.shape[1]):
            counts[c] += torch.bincount(chunk[:, c].reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum(1)
    mean = (counts * values).sum(1) / n
    variance = (counts * (values - mean[:, None]) ** 2).sum(1) / (n - 1).clamp_min(1)
    return tuple(mean.tolist()), tuple(variance.sqrt().clamp_min(1e-3).tolist())


def hwc_to_chw(array) -> torch.Tensor:
    """(N, H, W, C) or (N, H, W) numpy uint8 to a contiguous (N, C, H, W) tensor."""
    t = torch.from_numpy(array)
    if t.dim() == 3:
        t = t.unsqueeze(-1)
    return t.permute(0, 3, 1, 2).contiguous()
