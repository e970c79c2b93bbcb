"""The CPU-sized method studies that take many hours here (scripts/oat.py about 5.5 h, scripts/ews.py
about 12 h) trained on a lent GPU, side by side, for at most --budget seconds; then each study renders
what has finished (`--no-train`) and its JSON source goes into OUT. The JSON holds one record
per finished run with its configuration's fingerprint, which leaves out only where the data lies, so
a checkout takes those records instead of training the runs again (robustrain/study.py); the pages
say which device trained how many runs. bench/lease.py's cpu_studies stage runs it; back here:

    cp OUT/oat.json OUT/ews.json docs/results/
    python scripts/oat.py --no-train && python scripts/ews.py --no-train

Runs the JSON already holds are not trained again; a run expected (from its arm's recorded runs on
this device) to end after the budget is not started, and one cut off by the budget is lost. --tiny runs
the first study's tiny mode on a CPU and prints its page (nothing copied).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from process_group import start, wait_or_stop  # noqa: E402

STUDIES = ("oat", "ews")  # in the order of issue 15's remaining work
RENDER_S = 45  # kept at the end for each study's --no-train render


def train_for(studies: tuple[str, ...], flags: list[str], seconds: float) -> None:
    """Run the study scripts side by side, each in its own process group, and stop what is still
    running after `seconds` (its training processes included)."""
    deadline = time.monotonic() + seconds
    processes = {name: start([sys.executable, f"scripts/{name}.py", *flags], cwd=ROOT) for name in studies}
    for name, process in processes.items():
        code = wait_or_stop(process, deadline - time.monotonic())
        print(f"{name}: training exit {'stopped at the budget' if code is None else code}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True, help="the CIFAR-10 image folder")
    parser.add_argument("--budget", type=float, required=True, help="seconds for training and rendering")
    parser.add_argument("--jobs", type=int, default=4, help="runs at a time per study (default 4)")
    parser.add_argument("--tiny", action="store_true", help="the first study's tiny mode, on a CPU")
    args = parser.parse_args()
    studies = STUDIES[:1] if args.tiny else STUDIES
    flags = ["--data-root", str(args.data_root.resolve()), "--jobs", str(args.jobs), *(["--tiny"] if args.tiny else [])]
    seconds = args.budget - RENDER_S * len(studies)
    # the studies side by side share the cores: each run an equal share of them
    threads = max(1, (os.cpu_count() or 1) // (args.jobs * len(studies)))
    train_for(studies, [*flags, "--hours", str(seconds / 3600), "--threads", str(threads)], seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in studies:  # the JSON only: the page is rendered again here, from the records
        rendered = subprocess.run([sys.executable, f"scripts/{name}.py", "--no-train", *flags], cwd=ROOT)
        if rendered.returncode == 0 and not args.tiny:
            shutil.copy(ROOT / "docs/results" / f"{name}.json", args.out / f"{name}.json")
        print(f"{name}: render exit {rendered.returncode}", flush=True)


if __name__ == "__main__":
    main()
