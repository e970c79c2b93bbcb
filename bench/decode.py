"""How fast a folder of images is decoded, by number of worker processes: into robustrain's cache
(the device-resident path) and as a streamed training epoch (the streaming path).

    python bench/decode.py                      # ../shared/data/cifar10-jpeg, 1 and 2 workers, 3 rounds

cache: both splits decoded into a fresh, empty cache folder (listing, fingerprinting, decoding
and writing the cache file: what the first `load_dataset` of a folder costs). stream: one epoch
of the training split through `StreamLoader` (batches of 256, the crop-and-flip training view
made as each image is decoded, no model), after listing it. The worker counts alternate within
each round, so that a machine's drift affects both alike; the tables give every round and the median.
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

from robustrain.data import StreamLoader, TrainTransform, load_dataset  # noqa: E402
from robustrain.data.imagefolder import load_image_folder  # noqa: E402


def decode_seconds(root: Path, workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ROBUSTRAIN_CACHE"] = cache
        started = time.perf_counter()
        images = sum(len(load_image_folder(root, split, workers=workers).labels) for split in ("train", "test"))
        return time.perf_counter() - started, images


def stream_seconds(root: Path, workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ROBUSTRAIN_CACHE"] = cache
        train_set = load_dataset("imagefolder", root, "train", stream=True)
        loader = StreamLoader(train_set, 256, shuffle=True, transform=TrainTransform("crop_flip"), workers=workers)
        started = time.perf_counter()
        images = sum(len(y) for _, y in loader.epoch(0))
        return time.perf_counter() - started, images


def table(title: str, seconds: dict[int, list[float]], images: int) -> str:
    lines = [title, "", f"| workers | seconds per round ({images:,} images) | median | images/s |",
             "|---:|---|---:|---:|"]
    for workers, rounds in seconds.items():
        median = statistics.median(rounds)
        lines.append(f"| {workers} | {', '.join(f'{s:.1f}' for s in rounds)} | {median:.1f} | {images / median:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpeg")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=("cache", "stream"), default=["cache", "stream"])
    args = parser.parse_args()
    measure = {"cache": decode_seconds, "stream": stream_seconds}
    for mode in args.modes:
        seconds: dict[int, list[float]] = {w: [] for w in args.workers}
        for _ in range(args.rounds):
            for workers in args.workers:
                took, images = measure[mode](args.root, workers)
                seconds[workers].append(took)
        print(table(f"{mode}:", seconds, images), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
