"""`load_dataset(name, root, split)`: every supported dataset behind one call."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .cifar import load_cifar
from .dataset import ImageDataset, channel_stats, make_dataset
from .digits import load_digits
from .imagefolder import load_image_folder
from .mnist import load_mnist
from .svhn import load_svhn

DATASETS = ("cifar10", "cifar100", "digits", "fashion_mnist", "imagefolder", "mnist", "svhn")


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", *,
                 download: bool = False, color: str = "auto") -> ImageDataset:
    """Load a split as uint8 NCHW images with labels, class names and metadata.

    name: one of DATASETS. `digits` is embedded and needs no root.
    root: the folder holding the official files (or, for cifar10/cifar100, an
        ImageFolder export `root/<split>/<class>/`).
    download: fetch CIFAR archives that are absent (md5-checked).
    color: for image folders, "auto" (as stored), "rgb" or "grey" (converted when read).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; available datasets are {list(DATASETS)}.")
    if name == "digits":
        return load_digits(split)
    if root is None:
        raise DataError(f"dataset '{name}' needs a data root (CLI: --data-root).")
    root = Path(root).expanduser()
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, root, split, download, color)
    if not root.exists():
        raise DataError(f"data root {root} does not exist.")
    if name in ("mnist", "fashion_mnist"):
        return load_mnist(name, root, split)
    if name == "svhn":
        return load_svhn(root, split)
    return _load_generic_folder(root, split, color)


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
