"""Everything a lent GPU should run, as one command (issues 18 and 19), each stage under its own
time limit and writing into OUT as soon as it has something, so that a lease cut short keeps what
it measured. `--tiny` runs every stage on a CPU in a minute or two (the tests do).

    # here, once: pack the data and the peers' wheels into the ignored folder .gpu/
    python bench/folder_archive.py pack ../shared/data/cifar10-jpeg .gpu/cifar10-jpeg.npz
    pip download --no-deps --only-binary=:all: -d .gpu/wheels torchattacks adversarial-robustness-toolbox \\
        imagecorruptions-imaug
    # on the device (carry .gpu), from the project root, in two calls of the device tool (each under
    # its 10-minute limit; the second finds the first's scratch folder only while the machine stays
    # warm, about 30 s: have it ready). The 2026-11-27 H200 lease ran these (seed 0 then), in 225 + 291 s:
    python3 bench/lease.py --out $OUT --data .gpu/cifar10-jpeg.npz --commit $(git rev-parse --short HEAD) \\
        --stages departures hot_path gpu_bench --bench-stages steps profile --deadline-s 450
    python3 bench/lease.py ... --stages gpu_bench --bench-stages suite corrupt_files trainer \\
        --model-run /tmp/robustrain-lease/departures/dawnbench-code-s1 --deadline-s 500
    # a third call then ran `--stages hot_path gpu_bench --bench-stages compile` (108 s); still
    # unmeasured: on the reference H100, every stage at the current code. The seed methods' GPU
    # tests (not run yet), one or two per call, then `robustrain repro --render` here on the entries:
    python3 bench/lease.py ... --stages studies --deadline-s 570
    # back here: the pages (--page gpu-speed-h200 for an H200; --before only from the same device)
    python bench/gpu_report.py OUT1/gpu-speed.json OUT2/gpu-speed.json --before docs/results/gpu-speed.json
    python scripts/fast_at_departures.py --render docs/results/fast-at-departures.json OUT1/fast-at-departures-call.json

Stages, by default in the order below (`--stages` picks and orders them; `--deadline-s` shrinks each
stage's limit to what is left of the call, so that the device tool's per-call limit never kills the
call before its stages have written their results). Their output goes to one log, OUT/lease.log (the
tool brings back at most 8 files):
  hot_path    the hot-path tests under CUDA's sync debug mode;
  repro       `robustrain repro fast_at_cifar10` (its entry in OUT/reproductions.json and .md): also
              the trained PreAct-ResNet-18 that gpu_bench's suite stage evaluates;
  gpu_bench   bench/gpu.py, every stage or those of `--bench-stages` (OUT/gpu-speed.json,
              OUT/gpu-profile.txt);
  departures  scripts/fast_at_departures.py's dawnbench-full arm (train_cifar.py's initialisation
              and padding added) beside a second seed of dawnbench-code
              (OUT/fast-at-departures-call.json);
  decode      bench/decode.py with 1, 4 and 16 workers (does a many-core host keep a GPU fed?);
  studies     `robustrain repro` of the seed methods against their baselines (STUDIES, 3 runs at a time),
              those that fit the stage's time by their expected cost, each entry into OUT/reproductions.json
              as soon as it is done (about 7-10 minutes each by estimate: one or two per call).
  cpu_studies bench/cpu_studies.py: the CPU-sized OAT and EWS studies (issue 15; 8 h and 12 h on the 2-core
              CPU) side by side on the GPU, their runs that finish in the stage's time recorded in
              OUT/oat.json and OUT/ews.json, which the checkout then takes instead of training those runs.
All of it takes about 30 minutes on an H100: more than one lease's 15, so a lease picks. While issue 15
is open, the first call is `--stages cpu_studies --deadline-s 570` (then, back here, the two commands of
bench/cpu_studies.py's docstring).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from process_group import start, wait_or_stop  # noqa: E402

LIMITS_S = {"hot_path": 90, "repro": 420, "gpu_bench": 560, "departures": 420, "decode": 90, "studies": 560,
            "cpu_studies": 560}
STAGES = tuple(LIMITS_S)
DEPARTURE_ARMS = ("dawnbench-full:0", "dawnbench-code:1")
# robustrain repro's method-against-baseline experiments, in the order the studies stage tries them
# (the tiny mode runs the first only: the repro tests run all of them tiny)
STUDIES = ("aft_vs_pgd_at", "oat_vs_dedicated", "auxiliary_vs_standard", "ews_vs_augmix")
STUDY_JOBS = 3  # runs side by side on the GPU: one launch-bound run keeps it about half busy
# the tiny check of cpu_studies: its training is stopped part-way (the path a real lease takes), then rendered
TINY_CPU_STUDIES_S = 30
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
    """Run one stage under its limit, its output appended to `log` under a header; a failure or a
    timeout is logged, not fatal."""
    if limit <= 0:
        print(f"{name}: skipped, no time left before the deadline", flush=True)
        return
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n===== {name}: {' '.join(command)}\n")
        out.flush()
        code = wait_or_stop(start(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), limit)
        code = f"stopped at its {limit:.0f} s limit" if code is None else code
        out.write(f"===== {name}: exit {code}\n")
    print(f"{name}: {time.perf_counter() - started:.0f} s, exit {code} (log {log.name})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 image folder, or its .npz pack")
    parser.add_argument("--commit", default="unknown")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".gpu" / "wheels")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/robustrain-lease"))
    parser.add_argument("--tiny", action="store_true", help="every stage on a CPU, in a minute or two")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="which, in this order")
    parser.add_argument("--bench-stages", nargs="+", help="the stages of bench/gpu.py to run (default: all)")
    parser.add_argument("--deadline-s", type=float, help="seconds this call may take; later stages get less")
    parser.add_argument("--model-run", type=Path, help="the trained run gpu_bench's suite stage evaluates (default: "
                        "the repro stage's; e.g. SCRATCH/departures/dawnbench-code-s0 from an earlier call)")
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
    runs = args.scratch / "runs"
    trained = args.model_run or runs / ("tiny" if args.tiny else "") / "fast_at_cifar10"  # where repro leaves its run
    commands = {
        "hot_path": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_hot_path.py"],
        "repro": [sys.executable, "-m", "robustrain", "repro", "fast_at_cifar10", "--device", device,
                  "--data-root", str(data), "--runs-dir", str(runs), "--results", str(args.out), "--no-progress",
                  *tiny],
        "gpu_bench": [sys.executable, "bench/gpu.py", "--out", str(args.out), "--data-root", str(data),
                      "--device", device, "--commit", args.commit, "--model-run", str(trained), *bench_stages,
                      *tiny],
        "departures": [sys.executable, "scripts/fast_at_departures.py", "--data-root", str(data), "--device", device,
                       "--runs", *DEPARTURE_ARMS, "--runs-dir", str(args.scratch / "departures"),
                       "--commit", args.commit, "--record", str(args.out / "fast-at-departures-call.json"), *tiny],
        "studies": [sys.executable, "-m", "robustrain", "repro", *(STUDIES[:1] if args.tiny else STUDIES),
                    "--device", device, "--data-root", str(data), "--runs-dir", str(runs), "--results", str(args.out),
                    "--jobs", str(STUDY_JOBS), "--no-progress", *tiny],
        "cpu_studies": [sys.executable, "bench/cpu_studies.py", "--out", str(args.out), "--data-root", str(data),
                        *tiny],
        "decode": [sys.executable, "bench/decode.py", "--root", str(data), "--rounds", "1",
                   "--workers", *(["1", "2"] if args.tiny else ["1", "4", "16"])],
    }
    for name in args.stages:
        limit = stage_limit(name, deadline)
        # the studies that fit what is left of the stage (by their expected cost), each entry written when
        # done; the CPU studies' runs that finish in it
        seconds = max(limit - MARGIN_S, 1.0)
        if name == "cpu_studies" and args.tiny:
            seconds = min(seconds, TINY_CPU_STUDIES_S)
        budget = ["--budget", str(seconds)] if name in ("studies", "cpu_studies") else []
        stage(name, commands[name] + budget, args.out / "lease.log", env, limit)

if __name__ == "__main__":
    main()
