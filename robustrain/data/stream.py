"""The streaming loader: batches decoded and augmented in worker processes, for datasets that do
not fit in memory. Same interface and (seed, epoch) contract as `DeviceLoader`: the same
permutation of the images per epoch, and each image's training view seeded by (seed, epoch,
image), so a batch does not depend on the number of workers and an epoch can start at any batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError
from ..host import to_device
from .dataset import ImageDataset
from .files import FileImages, TrainTransform, DecodeItems, decoded_batches
from .loader import batch_count, check_batching, epoch_order, shard_rows


class StreamLoader:
    """Batches of (float images in [0, 1] on `device`, int64 labels) of a dataset whose images are
    `FileImages`, decoded by `workers` processes with pinned memory (on CUDA) and prefetching.

    transform: the training view made as each image is decoded (`TrainTransform`).
    shuffle, seed, last_batch, channels_last, shard: as `DeviceLoader` (each process decodes only its rows).
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, *, shuffle: bool, transform: TrainTransform,
                 seed: int = 0, last_batch: Literal["drop", "keep"] = "keep", device: torch.device | str = "cpu",
                 channels_last: bool = False, shard: tuple[int, int] = (0, 1), workers: int | None = None):
        if not isinstance(dataset.images, FileImages):
            raise ConfigError("StreamLoader reads datasets loaded with stream=True; this one is in memory.")
        check_batching(dataset, batch_size, last_batch, shard)
        self.images: FileImages = dataset.images
        self.labels = dataset.labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.transform = transform
        self.seed = seed
        self.last_batch = last_batch
        self.device = torch.device(device)
        self.shard = shard
        self.workers = self.images.workers if workers is None else workers
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        shape = self.images.shape_chw
        if transform.augment == "random_resized_crop":
            if transform.size is None:
                raise ConfigError("random_resized_crop needs an output size: set data.image_size.")
            shape = (shape[0], transform.size, transform.size)
        self.shape_chw = shape

    def __len__(self) -> int:
        return batch_count(len(self.labels), self.batch_size, self.last_batch)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch` from batch `start` on (earlier ones are neither read nor decoded)."""
        order = epoch_order(self.seed, epoch, len(self.labels), self.shuffle)[0].numpy()
        batches = []
        for b in range(start, len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            batches.append(index[shard_rows(len(index), self.shard)])
        items = DecodeItems(self.images.records, self.images.rows, self.images.color, self.shape_chw, self.transform,
                          self.seed, epoch)
        pin = self.device.type == "cuda"
        for index, images in zip(batches, decoded_batches(items, batches, self.workers, pin_memory=pin)):
            images = images.to(self.device, non_blocking=pin).to(memory_format=self.memory_format).float().div_(255)
            yield images, to_device(self.labels[torch.from_numpy(np.asarray(index))], self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
