"""SVHN (cropped digits) from the official `.mat` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset, make_dataset

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
MEAN, STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def load_svhn(root: Path, split: str) -> ImageDataset:
    if split not in FILES:
        raise DataError(f"svhn has splits {sorted(FILES)}, not '{split}'.")
    path = root / FILES[split]
    if not path.is_file():
        raise DataError(f"{path} not found; expected the official SVHN file {FILES[split]}.")
    import scipy.io  # here, not at the top: it adds a third of a second to every robustrain process

    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError) as error:
        raise DataError(f"cannot read {path} as a .mat file ({error}).") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} lacks the variables X and y of the official SVHN layout.")
    images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
    labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    # The release labels the digit 0 as 10.
    labels = np.where(labels == 10, 0, labels)
    return make_dataset("svhn", split, torch.from_numpy(images), torch.from_numpy(labels),
                        [str(d) for d in range(10)], MEAN, STD)
