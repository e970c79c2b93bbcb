"""Speed against the reference libraries on this machine, from one run (`make bench`).

1. Corruptions: per-image time of robustrain's batched tensor corruptions against the
   `imagecorruptions` package (per image, NumPy/OpenCV/scikit-image/numba), all 19 corruptions,
   all 5 severities (summed), 32x32 CIFAR-10 test images, and the full 19 x 5 set from the 10,000
   test images projected from them (`--full` also measures robustrain generating it).
   imagecorruptions has only the ImageNet-C severity table, so the speed-up compares robustrain
   run with that same table (same work); the time with the CIFAR table, which is what CIFAR
   evaluations use, is shown beside it.
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

from robustrain.corruptions import CORRUPTIONS, corrupt, corrupt_uint8
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


def reference_seconds_per_image(hwc: np.ndarray, severities: list[int], repeats: int) -> dict[str, float]:
    """imagecorruptions' seconds per image of each corruption, summed over `severities`."""
    from imagecorruptions import corrupt as reference_corrupt

    return {name: sum(median_seconds(lambda: [reference_corrupt(img, corruption_name=name, severity=severity)
                                              for img in hwc], repeats) for severity in severities) / len(hwc)
            for name in CORRUPTIONS}


def corruption_table(images: torch.Tensor, batch: int, reference_images: int, severities: list[int],
                     repeats: int) -> list[str]:
    x = images[:batch].float() / 255
    hwc = images[:reference_images].permute(0, 2, 3, 1).numpy()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        reference = pool.apply(reference_seconds_per_image, (hwc, severities, repeats))

    def ours(name: str, table: str) -> float:
        return sum(median_seconds(lambda: corrupt(x, name, severity, table=table), repeats)
                   for severity in severities) / batch

    lines = ["| corruption | imagecorruptions (ms/image) | robustrain, same table (ms/image) | speed-up "
             "| robustrain, CIFAR table (ms/image) |", "|---|---:|---:|---:|---:|"]
    totals = {"theirs": 0.0, "ours": 0.0, "cifar": 0.0}
    for name in CORRUPTIONS:
        times = {"theirs": reference[name], "ours": ours(name, "imagenet"), "cifar": ours(name, "cifar")}
        for key, value in times.items():
            totals[key] += value
        lines.append(f"| {name} | {1e3 * times['theirs']:.3f} | {1e3 * times['ours']:.3f} | "
                     f"{times['theirs'] / times['ours']:.1f}x | {1e3 * times['cifar']:.3f} |")
    lines.append(f"| **all 19, one image each** | {1e3 * totals['theirs']:.2f} | {1e3 * totals['ours']:.2f} | "
                 f"**{totals['theirs'] / totals['ours']:.1f}x** | {1e3 * totals['cifar']:.2f} |")
    goal = "met" if totals["theirs"] / totals["ours"] >= 20 else "missed"
    full = 10_000 * (5 / len(severities))
    lines += ["", f"Goal (at least 20x faster, all 19 corruptions): {goal}. Projected from these per-image times, "
              f"the full 19 x 5 set from the 10,000 test images takes imagecorruptions (one process) "
              f"{full * totals['theirs'] / 60:.1f} min and robustrain {full * totals['ours']:.0f} s with the same "
              f"table, {full * totals['cifar']:.0f} s with the CIFAR table."]
    return lines


def full_set_seconds(images: torch.Tensor) -> float:
    """Measured: robustrain generating every corruption at every severity (CIFAR table) from `images`."""
    started = time.perf_counter()
    for name in CORRUPTIONS:
        for severity in range(1, 6):
            corrupt_uint8(images, name, severity, table="cifar")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(SHARED_CIFAR), help="CIFAR-10 folder (default ../shared/data)")
    parser.add_argument("--batch", type=int, default=500, help="images per robustrain corruption call")
    parser.add_argument("--reference-images", type=int, default=50, help="images per imagecorruptions timing")
    parser.add_argument("--attack-images", type=int, default=128, help="images per attack timing")
    parser.add_argument("--run", default=str(ROOT / "runs/baselines/pgd_at"),
                        help="trained run whose model is attacked")
    parser.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5], choices=range(1, 6),
                        help="severities timed (default all five)")
    parser.add_argument("--full", action="store_true",
                        help="also time robustrain generating the whole 19 x 5 set from all 10,000 test images")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up; the median counts")
    parser.add_argument("--out", metavar="FILE", help="also write the tables, with this command, to a Markdown file")
    args = parser.parse_args()
    test_set = load_dataset("cifar10", args.data_root, "test")
    order = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(0))
    keep = order[:max(args.batch, args.attack_images)]
    images, labels = test_set.images[keep], test_set.labels[keep]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = (f"Commit {commit or 'unknown'}; torch {torch.__version__}, numpy {np.__version__}, "
               f"{torch.get_num_threads()} threads, {platform.machine()} CPU, {os.cpu_count()} cores.")
    print(machine + "\n")
    corruptions = corruption_table(images, args.batch, args.reference_images, args.severities, args.repeats)
    if args.full:
        seconds = full_set_seconds(test_set.images)
        corruptions.append(f"Measured (`--full`): robustrain generated the whole 19 x 5 set (CIFAR table, uint8, as "
                           f"`robustrain corrupt` writes it) from the {len(test_set)} test images in {seconds:.0f} s.")
    print("\n".join(corruptions) + "\n")
    model, described = bench_model(Path(args.run), None)
    attacks = evaluation_table(model, images[:args.attack_images].float() / 255, labels[:args.attack_images],
                               args.repeats, torch.device("cpu"), nullcontext)
    print(f"attacks on {described}")
    print("\n".join(attacks))
    if args.out:
        command = "python bench/speed.py " + " ".join(sys.argv[1:])
        page = ["# Speed against the reference libraries", "", f"Made by `{command}` (`make bench` runs it with "
                "the defaults).", "", machine, "",
                f"## Corruptions, severities {', '.join(map(str, args.severities))}, CIFAR-10 test images (32x32)", "",
                f"robustrain corrupts batches of {args.batch} images; imagecorruptions one image at a time "
                f"({args.reference_images} images, in a child process). Times per image are summed over the "
                "severities.", "", *corruptions, "",
                f"## Attacks on {described}, {args.attack_images} images, eps 8/255", "", *attacks, ""]
        Path(args.out).write_text("\n".join(page))


if __name__ == "__main__":
    main()
