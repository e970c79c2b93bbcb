"""Released corrupted test sets. CIFAR-10-C / CIFAR-100-C: one `<corruption>.npy` per corruption,
uint8 (5 N, H, W, 3), severity-major (rows 0..N-1 are severity 1), and `labels.npy` with the N test
labels repeated five times. ImageNet-C / Tiny-ImageNet-C: image folders
`<corruption>/<severity>/<class>/<image>`, read as they are needed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from ..data import EvalTransform, FileImages
from ..data.files import open_file_images
from ..data.imagefolder import folder_records, list_image_folder
from ..errors import DataError
from ..io import atomic_write
from .registry import SEVERITIES, corrupt_uint8, get_corruption


def load_corrupted(folder: str | Path, name: str, severity: int,
                   crop: int | None = None) -> tuple[torch.Tensor | FileImages, torch.Tensor]:
    """Images (N, C, H, W) uint8 and labels (N,) int64 of one corruption at one severity: from
    `<name>.npy` (in memory), or from the image folder `<name>/<severity>/` (read when used, each
    image centre-cropped to `crop` pixels if given, as ImageNet-C's 224 px files already are)."""
    get_corruption(name)
    if severity not in SEVERITIES:
        raise DataError(f"severity {severity!r} is not one of {SEVERITIES}")
    folder = Path(folder)
    if (folder / name).is_dir():
        records, labels = folder_records(list_image_folder(folder / name, str(severity))[1])
        return open_file_images(records, "rgb", EvalTransform(crop=crop)), labels
    images_path, labels_path = folder / f"{name}.npy", folder / "labels.npy"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise DataError(f"{path} does not exist; expected the released CIFAR-10-C layout (<corruption>.npy and "
                            f"labels.npy) or ImageNet-C's ({name}/<severity>/<class>/<image>)")
    try:
        images = np.load(images_path, mmap_mode="r", allow_pickle=False)
        labels = np.load(labels_path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{images_path} or {labels_path} is not a readable .npy array: {error}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{images_path} holds {images.dtype} of shape {images.shape}; expected uint8 (5 N, H, W, 3) "
                        "(or 1 channel for grey data)")
    if images.shape[0] % len(SEVERITIES) or labels.shape != (images.shape[0],):
        raise DataError(f"{images_path} has {images.shape[0]} images and {labels_path} {labels.shape[0]} labels; "
                        "expected 5 N images and as many labels")
    n = images.shape[0] // len(SEVERITIES)
    block = slice((severity - 1) * n, severity * n)
    return (torch.from_numpy(np.array(images[block])).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(labels[block].astype(np.int64)))


def write_corrupted(folder: str | Path, images: torch.Tensor, labels: torch.Tensor, names: Iterable[str], *,
                    seed: int = 0, table: str | None = None, device: torch.device | str = "cpu",
                    on_done: Callable[[str, int], None] | None = None) -> list[Path]:
    """Write `<name>.npy` for each corruption (and labels.npy) from clean uint8 images (N, 3, H, W).

    Each file appears only when complete; files already present are kept, so an interrupted run resumes.
    """
    folder = Path(folder)
    names = list(names)
    for name in names:
        get_corruption(name)
    label_dtype = np.uint8 if int(labels.max()) < 256 else np.int64
    written = []
    labels_path = folder / "labels.npy"
    if not labels_path.exists():
        repeated = np.tile(labels.numpy().astype(label_dtype), len(SEVERITIES))
        atomic_write(labels_path, lambda tmp: _save(tmp, repeated))
    images = images.to(device)
    for name in names:
        path = folder / f"{name}.npy"
        if path.exists():
            continue
        blocks = []
        for severity in SEVERITIES:
            corrupted = corrupt_uint8(images, name, severity, seed=seed, table=table)
            blocks.append(corrupted.permute(0, 2, 3, 1).cpu().numpy())
            if on_done is not None:
                on_done(name, severity)
        array = np.concatenate(blocks)
        atomic_write(path, lambda tmp: _save(tmp, array))
        written.append(path)
    return written


def _save(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
