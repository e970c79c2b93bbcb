"""A loader that keeps a whole dataset on the device as uint8 and batches it there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch

from ..errors import ConfigError
from .dataset import ImageDataset

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def stream_seed(seed: int, epoch: int, stream: int) -> int:
    """An independent seed per (run seed, epoch, stream), so that any epoch can be replayed alone."""
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63 - 1)


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> tuple[torch.Tensor, torch.Generator]:
    """The order of the n images in `epoch` (a permutation seeded by (seed, epoch) when shuffling)
    and the generator it was drawn from, which the epoch's augmentation draws continue: every
    loader visits the images in this order."""
    generator = torch.Generator().manual_seed(stream_seed(seed, epoch, 0))
    return (torch.randperm(n, generator=generator) if shuffle else torch.arange(n)), generator


def batch_count(n: int, batch_size: int, last_batch: str) -> int:
    return n // batch_size if last_batch == "drop" else -(-n // batch_size)


def shard_rows(count: int, shard: tuple[int, int]) -> slice:
    """The contiguous rows of a global batch of `count` images that process `rank` of `world` keeps."""
    rank, world = shard
    return slice(rank * count // world, (rank + 1) * count // world)


def check_batching(dataset: ImageDataset, batch_size: int, last_batch: str, shard: tuple[int, int]) -> None:
    """The batching settings every loader accepts: a positive batch that yields at least one batch
    and, with several processes, splits evenly among them."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}.")
    if last_batch not in ("drop", "keep"):
        raise ConfigError(f"last_batch must be 'drop' or 'keep', got {last_batch!r}.")
    if last_batch == "drop" and batch_size > len(dataset):
        raise ConfigError(f"batch size {batch_size} exceeds the {len(dataset)} images of {dataset.info.name} "
                          f"{dataset.split} and last_batch='drop' would yield no batch.")
    world = shard[1]
    if world > 1 and (batch_size % world or last_batch != "drop"):
        raise ConfigError(f"with {world} processes the global batch size must be a multiple of {world} and "
                          f"last_batch 'drop'; got batch size {batch_size} and last_batch {last_batch!r}.")


class DeviceLoader:
    """Batches of (float images in [0, 1], int64 labels) drawn from device-resident uint8 data.

    shuffle: a new permutation every epoch, seeded by (seed, epoch).
    last_batch: "drop" a final partial batch, or "keep" it.
    augment: a function (uint8 batch, generator) -> uint8 batch applied on the device.
    shard: (rank, world) for data-parallel training: every process draws and augments the same
        global batch of `batch_size` images and keeps its contiguous 1/world of it, so the
        processes together see exactly what one process sees with the same global batch.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                 last_batch: Literal["drop", "keep"] = "keep", augment: Augment | None = None,
                 device: torch.device | str = "cpu", channels_last: bool = False, shard: tuple[int, int] = (0, 1)):
        check_batching(dataset, batch_size, last_batch, shard)
        self.shard = shard
        self.device = torch.device(device)
        self.images = dataset.images.to(self.device)
        self.labels = dataset.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.last_batch = last_batch
        self.augment = augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return batch_count(len(self.labels), self.batch_size, self.last_batch)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch` from batch `start` on (the earlier ones are skipped, not
        yielded: their augmentation draws are replayed so that the rest are unchanged)."""
        order, generator = epoch_order(self.seed, epoch, len(self.labels), self.shuffle)
        order = order.to(self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            images = self.images[index]
            if self.augment is not None:
                images = self.augment(images, generator)
            if b < start:
                continue
            rows = shard_rows(len(index), self.shard)
            images = images[rows].to(memory_format=self.memory_format).float().div_(255)
            yield images, self.labels[index][rows]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
