"""CIFAR-10 and CIFAR-100 from the official python archives (or their extracted folder,
or an ImageFolder export with the official class names)."""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset, make_dataset
from .download import download
from .imagefolder import load_image_folder


@dataclass(frozen=True)
class CifarRelease:
    name: str
    archive: str
    url: str
    md5: str
    folder: str
    files: dict[str, tuple[str, ...]]
    label_key: bytes
    meta_file: str
    names_key: bytes
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarRelease(
    name="cifar10", archive="cifar-10-python.tar.gz", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a", folder="cifar-10-batches-py",
    files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    label_key=b"labels", meta_file="batches.meta", names_key=b"label_names",
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))

CIFAR100 = CifarRelease(
    name="cifar100", archive="cifar-100-python.tar.gz", url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85", folder="cifar-100-python",
    files={"train": ("train",), "test": ("test",)},
    label_key=b"fine_labels", meta_file="meta", names_key=b"fine_label_names",
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))


RELEASES = {"cifar10": CIFAR10, "cifar100": CIFAR100}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the official batches (dicts of bytes, lists and numpy arrays) and nothing
    else: a crafted file cannot make it import or call anything."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        # Python 3 writes bytes into protocol-2 pickles through this pure function.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._allowed:
            raise DataError(f"refusing to unpickle {module}.{name}: a CIFAR batch holds only arrays and lists.")
        return super().find_class(module, name)


def _unpickle(raw: bytes, origin: str) -> dict:
    try:
        return _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{origin} is not a valid CIFAR python batch ({error}).") from None


def _read_members(release: CifarRelease, source: Path, names: tuple[str, ...]) -> list[dict]:
    """The named batch files, read from the .tar.gz or from the extracted folder."""
    if source.is_dir():
        missing = [n for n in names if not (source / n).is_file()]
        if missing:
            raise DataError(f"{source} lacks {missing[0]}; expected the extracted {release.archive}.")
        return [_unpickle((source / n).read_bytes(), str(source / n)) for n in names]
    try:
        with tarfile.open(source, "r:gz") as archive:
            batches = []
            for n in names:
                member = f"{release.folder}/{n}"
                try:
                    handle = archive.extractfile(member)
                except KeyError:
                    raise DataError(f"{source} has no member {member}; it is not the official "
                                    f"{release.archive}.") from None
                batches.append(_unpickle(handle.read(), f"{source}:{member}"))
            return batches
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"cannot read {source} as a .tar.gz archive ({error}).") from None


def _locate(release: CifarRelease, root: Path, download_missing: bool) -> Path | None:
    """The archive or extracted folder under `root`; None where `root` is an ImageFolder export."""
    for candidate in (root, root / release.folder, root / release.archive):
        if candidate.is_dir() and (candidate / release.meta_file).is_file():
            return candidate
        if candidate.is_file() and candidate.name.endswith(".tar.gz"):
            return candidate
    if (root / "train").is_dir() or (root / "test").is_dir():
        return None
    if download_missing:
        return download(release.url, root / release.archive, release.md5)
    raise DataError(f"{release.name} not found under {root}: expected {release.archive}, the folder {release.folder}/, "
                    f"or train/<class>/ image folders; pass download=True (CLI: --download) to fetch it.")


def load_cifar(name: str, root: Path, split: str, download_missing: bool = False, color: str = "auto") -> ImageDataset:
    release = RELEASES[name]
    if split not in release.files:
        raise DataError(f"{release.name} has splits {sorted(release.files)}, not '{split}'.")
    source = _locate(release, root, download_missing)
    if source is None:
        folder = load_image_folder(root, split, name=release.name, color=color)
        return make_dataset(release.name, split, folder.images, folder.labels, folder.classes, release.mean,
                            release.std)
    meta, *batches = _read_members(release, source, (release.meta_file, *release.files[split]))
    classes = [c.decode() for c in meta[release.names_key]]
    images = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[release.label_key], dtype=np.int64) for b in batches])
    images = torch.from_numpy(images.reshape(-1, 3, 32, 32).copy())
    return make_dataset(release.name, split, images, torch.from_numpy(labels), classes, release.mean, release.std)
