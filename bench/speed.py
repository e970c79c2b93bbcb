"""Speed against the reference libraries on this machine, from one run (`make bench`).

1. Corruptions: per-image time of robustrain's batched tensor corruptions against the
   `imagecorruptions` package (per image, NumPy/OpenCV/scikit-image/numba), all 19 corruptions,
   severity 3, 32x32 CIFAR-10 test images. imagecorruptions has only the ImageNet-C severity
   table, so the speed-up compares robustrain run with that same table (same work); the time with
   the CIFAR table, which is what CIFAR evaluations use, is shown beside it.
2. Attacks: images per second of PGD-20 and APGD-CE (100 steps) against torchattacks, ART and a
   plain loop on the same model, images, eps and settings (bench/peers.py's evaluation table). The
   model is a trained run (default: the PGD-AT baseline, so that most images stay robust for many
   steps, as in a real evaluation); without one, an untrained small CNN, on which APGD stops early
   for the many misclassified images.

Timings are wall-clock medians of repeated runs after a warm-up (numba compiles glass blur on its
first call). imagecorruptions is timed in a child process: once numba and OpenCV have started their
own thread pools, torch in the same process slows down many times over, which would flatter the
reference. The thread count is printed with the results: it changes both sides alike.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from robustrain.corruptions import CORRUPTIONS, corrupt
from robustrain.data import load_dataset
from peers import bench_model, evaluation_table

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"


def median_seconds(work, repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def reference_seconds_per_image(hwc: np.ndarray, repeats: int) -> dict[str, float]:
    from imagecorruptions import corrupt as reference_corrupt

    return {name: median_seconds(lambda: [reference_corrupt(img, corruption_name=name, severity=3) for img in hwc],
                                 repeats) / len(hwc) for name in CORRUPTIONS}


def corruption_table(images: torch.Tensor, batch: int, reference_images: int, repeats: int) -> list[str]:
    x = images[:batch].float() / 255
    hwc = images[:reference_images].permute(0, 2, 3, 1).numpy()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        reference = pool.apply(reference_seconds_per_image, (hwc, repeats))
    lines = ["| corruption | imagecorruptions (ms/image) | robustrain, same table (ms/image) | speed-up "
             "| robustrain, CIFAR table (ms/image) |", "|---|---:|---:|---:|---:|"]
    totals = {"theirs": 0.0, "ours": 0.0, "cifar": 0.0}
    for name in CORRUPTIONS:
        theirs = reference[name]
        ours = median_seconds(lambda: corrupt(x, name, 3, table="imagenet"), repeats) / batch
        cifar = median_seconds(lambda: corrupt(x, name, 3, table="cifar"), repeats) / batch
        for key, value in (("theirs", theirs), ("ours", ours), ("cifar", cifar)):
            totals[key] += value
        lines.append(f"| {name} | {1e3 * theirs:.3f} | {1e3 * ours:.3f} | {theirs / ours:.1f}x | {1e3 * cifar:.3f} |")
    lines.append(f"| **all 19, one image each** | {1e3 * totals['theirs']:.2f} | {1e3 * totals['ours']:.2f} | "
                 f"**{totals['theirs'] / totals['ours']:.1f}x** | {1e3 * totals['cifar']:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(SHARED_CIFAR), help="CIFAR-10 folder (default ../shared/data)")
    parser.add_argument("--batch", type=int, default=500, help="images per robustrain corruption call")
    parser.add_argument("--reference-images", type=int, default=50, help="images per imagecorruptions timing")
    parser.add_argument("--attack-images", type=int, default=128, help="images per attack timing")
    parser.add_argument("--run", default=str(ROOT / "runs/baselines/pgd_at"), help="trained run whose model is attacked")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up; the median counts")
    parser.add_argument("--out", metavar="FILE", help="also write the tables, with this command, to a Markdown file")
    args = parser.parse_args()
    test_set = load_dataset("cifar10", args.data_root, "test")
    keep = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(0))[:max(args.batch, args.attack_images)]
    images, labels = test_set.images[keep], test_set.labels[keep]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = (f"Commit {commit or 'unknown'}; torch {torch.__version__}, numpy {np.__version__}, "
               f"{torch.get_num_threads()} threads, {platform.machine()} CPU, {os.cpu_count()} cores.")
    print(machine + "\n")
    corruptions = corruption_table(images, args.batch, args.reference_images, args.repeats)
    print("\n".join(corruptions) + "\n")
    model, described = bench_model(Path(args.run), None)
    attacks = evaluation_table(model, images[:args.attack_images].float() / 255, labels[:args.attack_images],
                               args.repeats, torch.device("cpu"), nullcontext)
    print(f"attacks on {described}")
    print("\n".join(attacks))
    if args.out:
        command = "python bench/speed.py " + " ".join(sys.argv[1:])
        page = ["# Speed against the reference libraries", "", f"Made by `{command}` (`make bench` runs it with "
                "the defaults).", "", machine, "", "## Corruptions, severity 3, CIFAR-10 test images (32x32)", "",
                f"robustrain corrupts batches of {args.batch} images; imagecorruptions one image at a time "
                f"({args.reference_images} images, in a child process).", "", *corruptions, "",
                f"## Attacks on {described}, {args.attack_images} images, eps 8/255", "", *attacks, ""]
        Path(args.out).write_text("\n".join(page))


if __name__ == "__main__":
    main()
