"""`load_dataset(name, root, split)`: every supported dataset behind one call."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..registry import Registry
from .cifar import load_cifar
from .dataset import ImageDataset, channel_stats, make_dataset
from .digits import load_digits
from .imagefolder import load_image_folder
from .mnist import load_mnist
from .svhn import load_svhn

DATASETS: Registry = Registry("dataset", DataError)
"""Every dataset, by name: a loader (root, split, download, color) -> ImageDataset."""


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", *,
                 download: bool = False, color: str = "auto") -> ImageDataset:
    """Load a split as uint8 NCHW images with labels, class names and metadata.

    name: one of DATASETS. `digits` is embedded and needs no root.
    root: the folder holding the official files (or, for cifar10/cifar100, an
        ImageFolder export `root/<split>/<class>/`).
    download: fetch CIFAR archives that are absent (md5-checked).
    color: for image folders, "auto" (as stored), "rgb" or "grey" (converted when read).
    """
    loader = DATASETS.get(name)
    if name != "digits" and root is None:
        raise DataError(f"dataset '{name}' needs a data root (CLI: --data-root).")
    return loader(Path(root).expanduser() if root is not None else None, split, download, color)


def _existing(root: Path) -> Path:
    if not root.exists():
        raise DataError(f"data root {root} does not exist.")
    return root


@DATASETS.register("cifar10")
def _cifar10(root: Path, split: str, download: bool, color: str) -> ImageDataset:
    return load_cifar("cifar10", root, split, download, color)


@DATASETS.register("cifar100")
def _cifar100(root: Path, split: str, download: bool, color: str) -> ImageDataset:
    return load_cifar("cifar100", root, split, download, color)


@DATASETS.register("digits")
def _digits(root: Path | None, split: str, download: bool, color: str) -> ImageDataset:
    return load_digits(split)


@DATASETS.register("fashion_mnist")
def _fashion_mnist(root: Path, split: str, download: bool, color: str) -> ImageDataset:
    return load_mnist("fashion_mnist", _existing(root), split)


@DATASETS.register("imagefolder")
def _imagefolder(root: Path, split: str, download: bool, color: str) -> ImageDataset:
    return _load_generic_folder(_existing(root), split, color)


@DATASETS.register("mnist")
def _mnist(root: Path, split: str, download: bool, color: str) -> ImageDataset:
    return load_mnist("mnist", _existing(root), split)


@DATASETS.register("svhn")
def _svhn(root: Path, split: str, download: bool, color: str) -> ImageDataset:
    return load_svhn(_existing(root), split)


def _load_generic_folder(root: Path, split: str, color: str) -> ImageDataset:
    """An ImageFolder normalised with its training split's statistics (the test split must
    not choose its own normalisation)."""
    folder = load_image_folder(root, split, color=color)
    train = folder if split == "train" or not (root / "train").is_dir() else load_image_folder(root, "train", color=color)
    if train.classes != folder.classes:
        raise DataError(f"{root}/{split} has classes {list(folder.classes)} but {root}/train has {list(train.classes)}.")
    if folder.images.shape[1:] != train.images.shape[1:]:
        def describe(images):
            return f"{images.shape[3]}x{images.shape[2]} {'RGB' if images.shape[1] == 3 else 'grayscale'}"
        raise DataError(f"{root}/{split} holds {describe(folder.images)} images but {root}/train holds "
                        f"{describe(train.images)} ones; both splits must agree (data.color converts colours).")
    mean, std = channel_stats(train.images)
    return make_dataset("imagefolder", split, folder.images, folder.labels, folder.classes, mean, std)
