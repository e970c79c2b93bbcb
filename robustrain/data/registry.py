"""`load_dataset(name, root, split)`: every supported dataset behind one call."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import DataError
from ..registry import Registry
from .cifar import RELEASES, load_cifar
from .dataset import ImageDataset, channel_stats, make_dataset
from .digits import load_digits
from .files import EvalTransform, FileImages, open_file_images
from .imagefolder import cached_decode, folder_fingerprint, folder_records, list_image_folder
from .shards import read_shards, shard_fingerprint, shard_paths
from .mnist import load_mnist
from .svhn import load_svhn
from .tinyimagenet import list_tiny_imagenet

DATASETS: Registry = Registry("dataset", DataError)
"""Every dataset, by name: a loader (root, split, ReadOptions) -> ImageDataset."""

# read image by image, so they can stream and take views (cifar10/cifar100 too when given as image folders)
FILE_DATASETS = ("imagefolder", "shards", "tinyimagenet", "cifar10", "cifar100")
STATS_SAMPLE = 1000  # training images whose statistics normalise a streamed dataset


@dataclass(frozen=True)
class ReadOptions:
    """How a split is read. download: fetch CIFAR archives that are absent (md5-checked).
    color: for image folders and shards, "auto" (as stored), "rgb" or "grey" (converted when read).
    view: resize / centre crop as each image is decoded (image folders and shards).
    stream: keep the images encoded on disk and decode them batch by batch (True), decode them
    all into memory (False), or stream only when the decoded split would exceed
    `stream_above_bytes` (None)."""

    download: bool = False
    color: str = "auto"
    view: EvalTransform = EvalTransform()
    stream: bool | None = None
    stream_above_bytes: int = 8 << 30


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", *,
                 download: bool = False, color: str = "auto", view: EvalTransform = EvalTransform(),
                 stream: bool | None = None, stream_above_bytes: int = 8 << 30) -> ImageDataset:
    """Load a split as uint8 NCHW images (a tensor, or `FileImages` decoded when read) with labels,
    class names and metadata.

    name: one of DATASETS. `digits` is embedded and needs no root.
    root: the folder holding the official files (or, for cifar10/cifar100, an
        ImageFolder export `root/<split>/<class>/`; for shards, `robustrain pack`'s output).
    download, color, view, stream, stream_above_bytes: as ReadOptions.
    """
    loader = DATASETS.get(name)
    if name != "digits" and root is None:
        raise DataError(f"dataset '{name}' needs a data root (CLI: --data-root).")
    options = ReadOptions(download, color, view, stream, stream_above_bytes)
    if name not in FILE_DATASETS and (stream or view != EvalTransform()):
        raise DataError(f"dataset '{name}' is read into memory as released; streaming and data.image_size / "
                        "data.resize apply to image folders and shards.")
    return loader(Path(root).expanduser() if root is not None else None, split, options)


def _existing(root: Path) -> Path:
    if not root.exists():
        raise DataError(f"data root {root} does not exist.")
    return root


@DATASETS.register("cifar10")
def _cifar10(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    return _cifar("cifar10", root, split, options)


@DATASETS.register("cifar100")
def _cifar100(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    return _cifar("cifar100", root, split, options)


def _cifar(name: str, root: Path, split: str, options: ReadOptions) -> ImageDataset:
    """The official archives, read into memory; an image-folder export (cifar10-jpeg) can also stream,
    normalised with the release's statistics."""
    if not options.stream and options.view == EvalTransform():
        return load_cifar(name, root, split, options.download, options.color)
    if not (root / split).is_dir():
        raise DataError(f"{name} streams (or takes data.image_size / data.resize) only as an image-folder export "
                        f"with {root / split}/<class>/; the official archives are read into memory.")
    part = _read_split("imagefolder", root, split, options)
    release = RELEASES[name]
    return make_dataset(name, split, part.images, part.labels, part.classes, release.mean, release.std)


@DATASETS.register("digits")
def _digits(root: Path | None, split: str, options: ReadOptions) -> ImageDataset:
    return load_digits(split)


@DATASETS.register("fashion_mnist")
def _fashion_mnist(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    return load_mnist("fashion_mnist", _existing(root), split)


@DATASETS.register("imagefolder")
def _imagefolder(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    return _load_files("imagefolder", _existing(root), split, options)


@DATASETS.register("mnist")
def _mnist(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    return load_mnist("mnist", _existing(root), split)


@DATASETS.register("shards")
def _shards(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    return _load_files("shards", _existing(root), split, options)


@DATASETS.register("tinyimagenet")
def _tinyimagenet(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    # a few of its JPEGs are grayscale: read every image as RGB unless told otherwise
    color = "rgb" if options.color == "auto" else options.color
    return _load_files("tinyimagenet", _existing(root), split, replace(options, color=color))


@DATASETS.register("svhn")
def _svhn(root: Path, split: str, options: ReadOptions) -> ImageDataset:
    return load_svhn(_existing(root), split)


@dataclass(frozen=True)
class _Split:
    classes: tuple[str, ...]
    images: torch.Tensor | FileImages
    labels: torch.Tensor


def _read_split(kind: str, root: Path, split: str, options: ReadOptions) -> _Split:
    """One split of an image folder or a shard set, streamed or decoded (through the cache)."""
    if kind == "shards":
        classes, records, labels = read_shards(root, split)
        labels = torch.from_numpy(labels)
    else:
        classes, files = (list_tiny_imagenet if kind == "tinyimagenet" else list_image_folder)(root, split)
        records, labels = folder_records(files)
    images = open_file_images(records, options.color, options.view)
    stream = options.stream
    if stream is None:
        stream = images.nbytes > options.stream_above_bytes
    if stream:
        return _Split(classes, images, labels)
    # what the decoded cache depends on (every file's size and time: not worth reading for a streamed split)
    key = shard_fingerprint(root, split) + f"\0{options.color}\0{options.view}" if kind == "shards" else \
        folder_fingerprint(root, split, files, options.color, options.view)
    return _Split(classes, cached_decode(key, f"{kind}-{split}", images), labels)


def _statistics(images: torch.Tensor | FileImages) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std: of every image in memory, of a fixed sample of STATS_SAMPLE streamed ones."""
    if isinstance(images, FileImages):
        sample = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:STATS_SAMPLE].sort().values
        return channel_stats(images[sample].batches(64))
    return channel_stats(images)


def _load_files(kind: str, root: Path, split: str, options: ReadOptions) -> ImageDataset:
    """An image folder or shard set normalised with its training split's statistics (the test
    split must not choose its own normalisation)."""
    part = _read_split(kind, root, split, options)
    has_train = bool(shard_paths(root, "train")) if kind == "shards" else (root / "train").is_dir()
    train_name = root / "train-*.tar" if kind == "shards" else root / "train"
    train = part if split == "train" or not has_train else _read_split(kind, root, "train", options)
    if train.classes != part.classes:
        raise DataError(f"{root}/{split} has classes {list(part.classes)} but {train_name} has {list(train.classes)}.")
    if part.images.shape[1:] != train.images.shape[1:]:
        def describe(images):
            return f"{images.shape[3]}x{images.shape[2]} {'RGB' if images.shape[1] == 3 else 'grayscale'}"
        raise DataError(f"{root}/{split} holds {describe(part.images)} images but {train_name} holds "
                        f"{describe(train.images)} ones; both splits must agree (data.color converts colours, "
                        "data.image_size resizes).")
    mean, std = _statistics(train.images)
    return make_dataset(kind, split, part.images, part.labels, part.classes, mean, std)
