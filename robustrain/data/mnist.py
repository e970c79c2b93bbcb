"""MNIST and Fashion-MNIST from the official IDX files, gzipped or raw."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset, make_dataset

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
STATS = {"mnist": ((0.1307,), (0.3081,)), "fashion_mnist": ((0.2860,), (0.3530,))}
PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX array of unsigned bytes (magic 0x00000801 labels, 0x00000803 images)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise DataError(f"cannot read {path} ({error}).") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} holds {len(raw) - header} bytes of data but its header promises shape {shape}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root} has neither {stem}.gz nor {stem}; expected the official IDX files.")


def load_mnist(name: str, root: Path, split: str) -> ImageDataset:
    if split not in PREFIX:
        raise DataError(f"{name} has splits {sorted(PREFIX)}, not '{split}'.")
    images = read_idx(_find(root, f"{PREFIX[split]}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{PREFIX[split]}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{name} {split}: expected images (N, H, W) and labels (N,), got {images.shape} and "
                        f"{labels.shape}.")
    classes = MNIST_CLASSES if name == "mnist" else FASHION_CLASSES
    mean, std = STATS[name]
    return make_dataset(name, split, torch.from_numpy(images.copy()).unsqueeze(1),
                        torch.from_numpy(labels.astype(np.int64)), classes, mean, std)
