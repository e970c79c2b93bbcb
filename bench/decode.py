"""How fast a folder of images is decoded into robustrain's cache, by number of worker processes.

    python bench/decode.py                      # ../shared/data/cifar10-jpeg, 1 and 2 workers, 3 rounds

Each measurement decodes both splits into a fresh, empty cache folder (listing, fingerprinting,
decoding and writing the cache file: what the first `load_dataset` of a folder costs). The worker
counts alternate within each round, so that a machine's drift affects both alike; the table gives
every round and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robustrain.data.imagefolder import load_image_folder  # noqa: E402


def decode_seconds(root: Path, workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ROBUSTRAIN_CACHE"] = cache
        started = time.perf_counter()
        images = sum(len(load_image_folder(root, split, workers=workers).labels) for split in ("train", "test"))
        return time.perf_counter() - started, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpeg")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seconds: dict[int, list[float]] = {w: [] for w in args.workers}
    for _ in range(args.rounds):
        for workers in args.workers:
            took, images = decode_seconds(args.root, workers)
            seconds[workers].append(took)
    print(f"| workers | seconds per round ({images:,} images) | median | images/s |\n|---:|---|---:|---:|")
    for workers, rounds in seconds.items():
        median = statistics.median(rounds)
        print(f"| {workers} | {', '.join(f'{s:.1f}' for s in rounds)} | {median:.1f} | {images / median:,.0f} |")


if __name__ == "__main__":
    main()
