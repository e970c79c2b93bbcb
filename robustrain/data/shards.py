"""Tar shards in the WebDataset layout: `<split>-000000.tar`, ... holding `<key>.<image ext>` and
`<key>.cls` (the class index as text) per sample, with the class names in `classes.txt`.

Why this format: it is what large-scale vision training already uses (WebDataset, timm, OpenCLIP
and big_vision read it), a shard is read front to back in large sequential reads (what network
file systems and many-core machines need: one open file per shard instead of one per image), and
it needs nothing but Python's `tarfile` to write or read: no extra dependency. Shards are
indexed once (member offsets from the tar headers), so a shard set is a random-access dataset
with the same (seed, epoch) determinism and mid-epoch resume as an image folder.

Why not the `webdataset` package (1.0.2, maintained; it adds braceexpand and PyYAML): it reads
shards as streams (an IterableDataset with shuffle buffers), so a batch would depend on the
number of workers and an epoch could not start at a given batch, which is the contract every
robustrain loader keeps. The sample layout is its own (`<key>.<ext>` members), so shards written
here can be read with it; shards written elsewhere are read here when each sample has a `.cls`
label (and a key without dots) and the folder has a classes.txt.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write, atomic_write_text
from .files import Records
from .imagefolder import IMAGE_SUFFIXES, list_image_folder

CLASSES_FILE = "classes.txt"


def shard_paths(root: Path, split: str) -> list[Path]:
    return sorted(root.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))


def is_shard_root(root: Path) -> bool:
    return (root / CLASSES_FILE).is_file() and bool(shard_paths(root, "train") or shard_paths(root, "test"))


def write_shards(source: Path, split: str, out: Path, shard_bytes: int = 1 << 30) -> list[Path]:
    """Pack the image folder `source/split` into shards of at most `shard_bytes` (at least one
    sample each), in the folder's sorted order; returns the shards written. Each shard is
    written whole under a temporary name first, so a stopped pack leaves no partial shard."""
    if shard_bytes < 1:
        raise DataError(f"the shard size must be positive, got {shard_bytes} bytes.")
    classes, files = list_image_folder(source, split)
    out.mkdir(parents=True, exist_ok=True)
    names_file = out / CLASSES_FILE
    if names_file.is_file() and tuple(names_file.read_text().splitlines()) != classes:
        raise DataError(f"{names_file} lists other classes than {source / split}; pack each dataset into its own "
                        "folder.")
    for old in shard_paths(out, split):
        old.unlink()
    groups: list[list[int]] = [[]]
    size = 0
    for index, (path, _) in enumerate(files):
        member = path.stat().st_size + 2048  # two headers and padding, roughly
        if groups[-1] and size + member > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += member
    written = []
    for number, group in enumerate(groups):
        target = out / f"{split}-{number:06d}.tar"

        def write(tmp: str, group=group) -> None:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for index in group:
                    path, label = files[index]
                    key = f"{index:09d}"
                    tar.add(path, arcname=f"{key}{path.suffix.lower()}", recursive=False)
                    _add_bytes(tar, f"{key}.cls", str(label).encode())

        atomic_write(target, write)
        written.append(target)
    atomic_write_text(names_file, "".join(f"{name}\n" for name in classes))
    return written


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def read_shards(root: Path, split: str) -> tuple[tuple[str, ...], Records, np.ndarray]:
    """(class names, the image members as Records, int64 labels) of `root/<split>-*.tar`, in shard
    and member order. Reads only the tar headers and the small .cls members."""
    names_file = root / CLASSES_FILE
    if not names_file.is_file():
        raise DataError(f"{names_file} does not exist; expected shards written by `robustrain pack` "
                        f"(<split>-000000.tar ... and {CLASSES_FILE}).")
    classes = tuple(names_file.read_text().splitlines())
    paths = shard_paths(root, split)
    if not paths:
        raise DataError(f"no shards for split '{split}' in {root}; expected {split}-000000.tar and on.")
    shard, offsets, sizes, labels = [], [], [], []
    for number, path in enumerate(paths):
        pending: dict[str, tuple[int, int]] = {}
        found: dict[str, int] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, suffix = member.name.rpartition(".")
                    if "." + suffix.lower() in IMAGE_SUFFIXES:
                        pending[key] = (member.offset_data, member.size)
                    elif suffix == "cls":
                        found[key] = int(tar.extractfile(member).read().decode().strip())
        except (tarfile.TarError, OSError, ValueError) as error:
            raise DataError(f"cannot read shard {path} ({error}).") from None
        if set(pending) != set(found):
            missing = sorted(set(pending) ^ set(found))[0]
            raise DataError(f"shard {path}: sample {missing!r} has an image without a .cls label or a label without "
                            "an image.")
        for key in sorted(pending):
            label = found[key]
            if not 0 <= label < len(classes):
                raise DataError(f"shard {path}: sample {key!r} has label {label}, outside 0..{len(classes) - 1} "
                                f"({len(classes)} classes in {CLASSES_FILE}).")
            shard.append(number)
            offsets.append(pending[key][0])
            sizes.append(pending[key][1])
            labels.append(label)
    records = Records(tuple(str(p) for p in paths), np.asarray(shard, np.int32), np.asarray(offsets, np.int64),
                      np.asarray(sizes, np.int64))
    return classes, records, np.asarray(labels, np.int64)


def shard_fingerprint(root: Path, split: str) -> str:
    """What a cache of decoded shards depends on: each shard's name, size and modification time."""
    return "".join(f"{p.name}\0{p.stat().st_size}\0{p.stat().st_mtime_ns}\n" for p in shard_paths(root, split)) + \
        str(root.resolve())
