"""A folder of many small files as one .npz (relative names and bytes), and back.

Machines that receive a working tree by file system blocks count 60,000 small CIFAR-10 JPEGs at
far more than their bytes; one archive of their bytes travels at its size (57 MB). Nothing is
re-encoded: unpacking gives the same bytes under the same names.

    python bench/folder_archive.py pack ../shared/data/cifar10-jpeg .gpu/cifar10-jpeg.npz
    python bench/folder_archive.py unpack .gpu/cifar10-jpeg.npz /tmp/cifar10-jpeg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def pack(folder: Path, archive: Path) -> int:
    """Write every file under `folder` into `archive`; returns the number of files."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    blobs = [p.read_bytes() for p in files]
    ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
    names = np.array([p.relative_to(folder).as_posix().encode() for p in files])
    archive.parent.mkdir(parents=True, exist_ok=True)
    np.savez(archive, names=names, ends=ends, data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    return len(files)


def unpack(archive: Path, folder: Path) -> int:
    """Recreate the packed files under `folder`; returns the number of files."""
    with np.load(archive) as packed:
        names, ends, data = packed["names"], packed["ends"], packed["data"]
    starts = np.concatenate([[0], ends[:-1]])
    for name, start, end in zip(names, starts, ends):
        path = folder / name.decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[start:end].tobytes())
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path, help="folder to pack, or archive to unpack")
    parser.add_argument("target", type=Path, help="archive to write, or folder to unpack into")
    args = parser.parse_args()
    count = pack(args.source, args.target) if args.action == "pack" else unpack(args.source, args.target)
    print(f"{args.action}ed {count} files: {args.source} -> {args.target}")


if __name__ == "__main__":
    main()
