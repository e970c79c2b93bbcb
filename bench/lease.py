"""Everything a lent GPU should run, as one command (issues 18 and 19), each stage under its own
time limit and writing into OUT as soon as it has something, so that a lease cut short keeps what
it measured. `--tiny` runs every stage on a CPU in about a minute (the tests do).

    # here, once: pack the data and the peers' wheels into the ignored folder .gpu/
    python bench/folder_archive.py pack ../shared/data/cifar10-jpeg .gpu/cifar10-jpeg.npz
    pip download --no-deps --only-binary=:all: -d .gpu/wheels torchattacks adversarial-robustness-toolbox \\
        imagecorruptions-imaug
    # on the device (carry .gpu), from the project root:
    python3 bench/lease.py --out $OUT --data .gpu/cifar10-jpeg.npz --commit $(git rev-parse --short HEAD)
    # a lease split over two calls (each under the tool's 10-minute limit):
    python3 bench/lease.py ... --stages repro gpu_bench --bench-stages steps profile corruptions --deadline-s 560
    python3 bench/lease.py ... --stages gpu_bench hot_path decode --bench-stages trainer compile --deadline-s 240
    # back here: the pages
    python bench/gpu_report.py OUT/gpu-speed.json --before docs/results/gpu-speed.json

Stages, by default in this order (`--stages` picks and orders them; `--deadline-s` shrinks each
stage's limit to what is left of the call, so that the device tool's per-call limit never kills the
call before its stages have written their results): the hot-path tests under CUDA's sync debug mode
(OUT/hot-path.log); bench/gpu.py, every stage or those of `--bench-stages` (OUT/gpu-speed.json,
OUT/gpu-profile.txt); `robustrain repro fast_at_cifar10` (its entry in OUT/reproductions.json and
.md); bench/decode.py with 1, 4 and 16 workers (the cache's first decode and a streamed epoch: does a
many-core host keep a GPU fed? OUT/decode.log). About 9.5 minutes on an H100.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMITS_S = {"hot_path": 90, "gpu_bench": 450, "decode": 90, "repro": 420}
STAGES = ("hot_path", "gpu_bench", "repro", "decode")
MARGIN_S = 10  # left at the deadline for the last stage's files to be written and the call to return


def unpacked(data: Path, scratch: Path) -> Path:
    """The image folder: `data` itself, or `data` (a bench/folder_archive.py .npz) unpacked."""
    if data.is_dir():
        return data
    sys.path.insert(0, str(ROOT / "bench"))
    from folder_archive import unpack

    target = scratch / data.stem
    if not target.is_dir():
        unpack(data, target)
    return target


def wheel_path(wheels: Path, scratch: Path) -> str | None:
    """Install the carried wheels (no index, no dependencies) into scratch; the folder to import from."""
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not found:
        return None
    site = scratch / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--no-index", "--no-deps",
                    "--no-compile", "--target", str(site), *map(str, found)], check=True)
    return str(site)


def stage_limit(name: str, deadline: float | None) -> float:
    """The stage's own limit, cut to what is left before the deadline (a time.monotonic() value)."""
    if deadline is None:
        return LIMITS_S[name]
    return max(min(LIMITS_S[name], deadline - time.monotonic() - MARGIN_S), 0.0)


def stage(name: str, command: list[str], log: Path, env: dict, limit: float) -> None:
    """Run one stage under its limit, its output into `log`; a failure or a timeout is logged, not fatal."""
    if limit <= 0:
        print(f"{name}: skipped, no time left before the deadline", flush=True)
        return
    started = time.perf_counter()
    with open(log, "w") as out:
        # its own process group, so that a timeout also stops the processes it started (bench/gpu.py's
        # stage processes, data loader workers), which would otherwise hold the GPU into the next stage
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = f"stopped at its {limit:.0f} s limit"
    print(f"{name}: {time.perf_counter() - started:.0f} s, exit {code} (log {log.name})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 image folder, or its .npz pack")
    parser.add_argument("--commit", default="unknown")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".gpu" / "wheels")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/robustrain-lease"))
    parser.add_argument("--tiny", action="store_true", help="every stage on a CPU, in about a minute")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="which, in this order")
    parser.add_argument("--bench-stages", nargs="+", help="the stages of bench/gpu.py to run (default: all)")
    parser.add_argument("--deadline-s", type=float, help="seconds this call may take; later stages get less")
    args = parser.parse_args()
    deadline = None if args.deadline_s is None else time.monotonic() + args.deadline_s
    args.out.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    data = unpacked(args.data, args.scratch)
    site = wheel_path(args.wheels, args.scratch)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROBUSTRAIN_CACHE": str(args.scratch / "cache"),
           "ROBUSTRAIN_COMMIT": args.commit,
           "PYTHONPATH": os.pathsep.join(p for p in (site, str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    device = "cpu" if args.tiny else "cuda"
    tiny = ["--tiny"] if args.tiny else []
    bench_stages = ["--stages", *args.bench_stages] if args.bench_stages else []
    commands = {
        "hot_path": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_hot_path.py"],
        "gpu_bench": [sys.executable, "bench/gpu.py", "--out", str(args.out), "--data-root", str(data),
                      "--device", device, "--commit", args.commit, *bench_stages, *tiny],
        "repro": [sys.executable, "-m", "robustrain", "repro", "fast_at_cifar10", "--device", device,
                  "--data-root", str(data), "--runs-dir", str(args.scratch / "runs"), "--results", str(args.out),
                  "--no-progress", *tiny],
        # by default last: the stage a lease cut short can best do without
        "decode": [sys.executable, "bench/decode.py", "--root", str(data), "--rounds", "1",
                   "--workers", *(["1", "2"] if args.tiny else ["1", "4", "16"])],
    }
    logs = {"hot_path": "hot-path.log", "gpu_bench": "gpu-bench.log", "repro": "repro.log", "decode": "decode.log"}
    for name in args.stages:
        stage(name, commands[name], args.out / logs[name], env, stage_limit(name, deadline))


if __name__ == "__main__":
    main()
