"""ImageFolder (`root/<split>/<class>/*.png|jpg`), decoded once and cached as one uint8 tensor file."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import load_file, save_file

from ..errors import DataError
from ..io import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
CACHE_FORMAT = 1


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
        images = sorted(e.name for e in os.scandir(split_dir / name)
                        if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            raise DataError(f"class folder {split_dir / name} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        files += [(split_dir / name / f, label) for f in images]
    return classes, files


COLORS = ("auto", "rgb", "grey")


def _fingerprint(root: Path, split: str, files: list[tuple[Path, int]], color: str) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{root.resolve()}\0{split}\0{color}".encode())
    for path, label in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DataError(f"image {path} disappeared while {root / split} was being read; run again once the "
                            "folder has stopped changing.") from None
        digest.update(f"{path.name}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode(path: Path, color: str) -> np.ndarray:
    """8-bit pixels (H, W) or (H, W, 3); 16-bit grey images are scaled to 8 bits, not clipped."""
    try:
        with Image.open(path) as image:
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                image = Image.fromarray(np.round(np.asarray(image, dtype=np.float64) / 257).clip(0, 255)
                                        .astype(np.uint8), mode="L")
            elif image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "F") else "RGB")
            if color != "auto":
                image = image.convert("RGB" if color == "rgb" else "L")
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot decode image {path} ({error}).") from None


def _decode_chunk(paths: list[Path], color: str) -> list[np.ndarray]:
    return [_decode(path, color) for path in paths]


def decode_workers() -> int:
    """Processes that decode a folder: $ROBUSTRAIN_DECODE_WORKERS, else one per CPU core this process may use."""
    given = os.environ.get("ROBUSTRAIN_DECODE_WORKERS")
    if given is not None:
        if not given.isdigit() or int(given) < 1:
            raise DataError(f"ROBUSTRAIN_DECODE_WORKERS must be a whole number of at least 1, got {given!r}.")
        return int(given)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


DECODE_CHUNK = 1000  # images per task: large enough that starting a task costs little


def _decode_files(paths: list[Path], color: str, workers: int) -> list[np.ndarray]:
    """Decode in `workers` processes (chunks in order, so the result is the same for any count)."""
    chunks = [paths[i:i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        return [array for chunk in chunks for array in _decode_chunk(chunk, color)]
    # fork: the workers only run Pillow and NumPy, and a spawned worker would re-run the caller's
    # main module (breaking scripts without a __main__ guard); spawn where fork does not exist
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
        return [array for decoded in pool.map(_decode_chunk, chunks, [color] * len(chunks)) for array in decoded]


def _decode_all(files: list[tuple[Path, int]], color: str, workers: int) -> torch.Tensor:
    arrays = _decode_files([path for path, _ in files], color, workers)
    kinds = {}
    for (path, _), array in zip(files, arrays):
        kinds.setdefault(array.ndim, []).append(path)
    if len(kinds) > 1:
        grey = kinds[2]
        raise DataError(f"{len(grey)} of {len(files)} images are grayscale (the first: {grey[0]}) and the rest RGB; "
                        "set data.color to rgb (or grey) to convert every image when it is read, or convert those "
                        "files yourself.")
    first = arrays[0]
    for (path, _), array in zip(files, arrays):
        if array.shape != first.shape:
            raise DataError(f"image {path} is {array.shape[1]}x{array.shape[0]} but {files[0][0]} is "
                            f"{first.shape[1]}x{first.shape[0]}; all images must have one size.")
    tensor = torch.from_numpy(np.stack(arrays))
    return tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2).contiguous()


def load_image_folder(root: Path, split: str, name: str = "imagefolder", color: str = "auto",
                      workers: int | None = None) -> DecodedFolder:
    """Decode `root/split` once; later loads read the cache (seconds for 60,000 images).

    color: "auto" keeps the images as stored (all must be grayscale or all RGB); "rgb" or "grey"
    converts each image as it is read. workers: decoding processes (default `decode_workers()`).
    """
    if color not in COLORS:
        raise DataError(f"data.color must be one of {', '.join(COLORS)}, got {color!r}.")
    classes, files = list_image_folder(root, split)
    cache = cache_dir() / f"{name}-{split}-{_fingerprint(root, split, files, color)}.safetensors"
    if cache.is_file():
        tensors = load_file(cache)
        return DecodedFolder(tensors["images"], tensors["labels"], classes)
    images = _decode_all(files, color, decode_workers() if workers is None else workers)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    atomic_write(cache, lambda tmp: save_file({"images": images, "labels": labels}, tmp))
    return DecodedFolder(images, labels, classes)
