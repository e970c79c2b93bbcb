"""The embedded default: scikit-learn's handwritten digits (1,797 real 8x8 images, UCI).

It ships inside the scikit-learn wheel, so the demo and the quick tests need no download.
The split is a fixed, stratified 80/20 split that does not depend on any seed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset, make_dataset

TEST_FRACTION = 0.2


def _split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per class, every fifth image (by position) goes to test: stratified and reproducible."""
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        test[rows[:: int(round(1 / TEST_FRACTION))]] = True
    return {"train": np.flatnonzero(~test), "test": np.flatnonzero(test)}


def load_digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # Pixel values are counts 0..16 of an 8x8 grid; scale them to the full uint8 range.
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    splits = _split_indices(labels)
    if split not in splits:
        raise DataError(f"digits has splits {sorted(splits)}, not '{split}'.")
    rows = splits[split]
    train = images[splits["train"]].astype(np.float64) / 255
    mean, std = (float(train.mean()),), (float(train.std()),)
    return make_dataset("digits", split, torch.from_numpy(images[rows]), torch.from_numpy(labels[rows]),
                        [str(d) for d in range(10)], mean, std)
