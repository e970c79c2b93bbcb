"""ImageFolder (`root/<split>/<class>/*.png|jpg`), decoded once and cached as one uint8 tensor file."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import DataError
from ..io import atomic_write
from .files import EvalTransform, FileImages, Records, open_file_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
CACHE_FORMAT = 2  # 2: the view (resize, crop) is part of the key


@dataclass(frozen=True)
class DecodedFolder:
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]


def cache_dir() -> Path:
    """Where decoded folders are cached: $ROBUSTRAIN_CACHE, else ~/.cache/robustrain."""
    return Path(os.environ.get("ROBUSTRAIN_CACHE") or Path.home() / ".cache" / "robustrain")


def list_image_folder(root: Path, split: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names (sorted folder names) and (file, label) pairs in sorted order."""
    split_dir = root / split
    if not split_dir.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DataError(f"no folder for split '{split}' under {root}; found {present or 'nothing'}.")
    classes = tuple(sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir()))
    if not classes:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image>.")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        images = image_names(split_dir / name)
        if not images:
            raise DataError(f"class folder {split_dir / name} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        files += [(split_dir / name / f, label) for f in images]
    return classes, files


def image_names(folder: Path) -> list[str]:
    """The image files directly in `folder` (by suffix), sorted by name."""
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))


def folder_records(files: list[tuple[Path, int]]) -> tuple[Records, torch.Tensor]:
    """The (file, label) pairs of a listing as Records and an int64 label tensor."""
    return Records(tuple(str(path) for path, _ in files)), torch.tensor([label for _, label in files],
                                                                        dtype=torch.int64)


def folder_fingerprint(root: Path, split: str, files: list[tuple[Path, int]], color: str, view: EvalTransform) -> str:
    digest = hashlib.sha256(f"{root.resolve()}\0{split}\0{color}\0{view}".encode())
    for path, label in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DataError(f"image {path} disappeared while {root / split} was being read; run again once the "
                            "folder has stopped changing.") from None
        digest.update(f"{path.name}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def load_image_folder(root: Path, split: str, name: str = "imagefolder", color: str = "auto",
                      workers: int | None = None, view: EvalTransform = EvalTransform()) -> DecodedFolder:
    """Decode `root/split` once, in `workers` processes; later loads read the cache (seconds for 60,000 images).

    color: "auto" keeps the images as stored (all must be grayscale or all RGB); "rgb" or "grey"
    converts each image as it is read. workers: decoding processes (default `decode_workers()`).
    view: resize / centre crop applied as each image is decoded (all images must then agree in size).
    """
    classes, files = list_image_folder(root, split)
    records, labels = folder_records(files)
    images = open_file_images(records, color, view, workers)
    return DecodedFolder(cached_decode(folder_fingerprint(root, split, files, color, view), f"{name}-{split}", images),
                         labels, classes)


def cached_decode(key: str, prefix: str, images: FileImages) -> torch.Tensor:
    """`images` decoded, through a cache file named after a digest of `key` (what the images depend on)."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{key}".encode()).hexdigest()[:24]
    cache = cache_dir() / f"{prefix}-{digest}.safetensors"
    if cache.is_file():
        return load_file(cache)["images"]
    decoded = images.to("cpu")
    atomic_write(cache, lambda tmp: save_file({"images": decoded}, tmp))
    return decoded
