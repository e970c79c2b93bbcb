"""The frost textures of the reference generator, read from the package that ships them.

The `imagecorruptions` wheels (and `imagecorruptions-imaug`) carry byte-identical copies of
hendrycks/robustness' frost1.png ... frost5.jpg; the reference only ever picks the first five.
Only the files are used, so the package can be installed with `pip install --no-deps`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError

FROST_SHA256 = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
}
PACKAGES = ("imagecorruptions-imaug", "imagecorruptions")


def texture_folder() -> Path:
    for package in PACKAGES:
        try:
            folder = Path(importlib.metadata.distribution(package).locate_file("imagecorruptions/frost"))
        except importlib.metadata.PackageNotFoundError:
            continue
        if folder.is_dir():
            return folder
    raise DataError("the frost corruption needs the frost textures shipped by imagecorruptions-imaug, which is "
                    "not installed; install it with `pip install --no-deps imagecorruptions-imaug`")


@functools.lru_cache(maxsize=1)
def frost_textures() -> tuple[torch.Tensor, ...]:
    """The five textures as uint8 RGB tensors (3, H, W), checked against the reference's bytes."""
    folder = texture_folder()
    textures = []
    for name, digest in FROST_SHA256.items():
        data = (folder / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise DataError(f"frost texture {folder / name} differs from the reference file (sha256 mismatch)")
        with Image.open(folder / name) as image:
            textures.append(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1))
    return tuple(textures)
