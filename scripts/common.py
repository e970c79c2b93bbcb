"""Helpers shared by the experiment scripts: run a config once, describe the machine."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from robustrain.results import RunResults
from robustrain.runs import RunFolder

ROOT = Path(__file__).resolve().parent.parent


def ensure_run(config: str, run: str, *overrides: str, train: bool = True,
               threads: int | None = None) -> RunResults | None:
    """Train `config` into `run` unless it has finished; resume it if it was stopped. Returns its
    results; with train=False, returns None for a run that has not finished instead of training it.
    threads: the run's torch threads (default: torch's, every core)."""
    folder = RunFolder(ROOT / run)
    if folder.results() is None:
        if not train:
            return None
        if folder.holds_run():
            argv = ["train", "--resume", run, "--no-progress"]
        else:
            argv = ["train", "--config", config, "--out", run, "--no-progress", *overrides]
        robustrain(argv, threads)
    return folder.results()


def robustrain(argv: list[str], threads: int | None = None) -> None:
    """Run `robustrain ARGV` from the project root, echoing the command; threads: its torch threads
    (default: torch's, every core)."""
    print("$ robustrain", " ".join(argv), flush=True)
    env = {**os.environ, **({} if threads is None else {"OMP_NUM_THREADS": str(threads)})}
    subprocess.run([sys.executable, "-m", "robustrain", *argv], cwd=ROOT, check=True, env=env)


def threads_per_job(jobs: int) -> int | None:
    """An equal share of the cores for each of `jobs` processes (None, torch's default, for one)."""
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


@dataclass(frozen=True)
class RunSpec:
    """One training run of a study: its config file, run folder and extra `robustrain train` arguments;
    after: the run folder of another spec that must finish first (the run this one starts from)."""

    config: str
    run: str
    overrides: tuple[str, ...] = ()
    after: str | None = None


def ensure_runs(specs: list[RunSpec], train: bool, jobs: int = 1) -> dict[str, RunResults | None]:
    """ensure_run for every spec, `jobs` processes at a time, each with an equal share of the cores
    (one process per core is how this 2-core machine trains the most small runs per hour); a spec
    with `after` starts when that run has finished (and not at all if it did not). Returns {run
    folder: results, or None for one that has not finished with train=False}."""
    threads = threads_per_job(jobs)
    futures: dict[str, Future] = {}

    def ensure(spec: RunSpec) -> RunResults | None:
        # The pool starts tasks in submission order, so `after` is running or done: waiting cannot deadlock.
        if spec.after is not None and futures[spec.after].result() is None:
            return None
        return ensure_run(spec.config, spec.run, *spec.overrides, train=train, threads=threads)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for spec in specs:
            if spec.after is not None and spec.after not in futures:
                raise ValueError(f"run {spec.run} starts from {spec.after}, which is not listed before it.")
            futures[spec.run] = pool.submit(ensure, spec)
        return {run: future.result() for run, future in futures.items()}


def ensure_evaluations(runs: list[str], suite: str, evaluate: bool, jobs: int = 1) -> set[str]:
    """ensure_evaluation for every run, `jobs` at a time, each process with an equal share of the
    cores; returns the runs whose evaluation has finished."""
    threads = threads_per_job(jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = dict(zip(runs, pool.map(lambda run: ensure_evaluation(run, suite, evaluate, threads), runs)))
    return {run for run, finished in done.items() if finished}


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences a - b of one metric (both arms trained with the same seeds), their mean,
    sample standard deviation and the half-width of the two-sided 95% t interval of the mean."""

    differences: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences)

    @property
    def spread(self) -> float:
        return statistics.stdev(self.differences) if len(self.differences) > 1 else math.nan

    @property
    def half_width(self) -> float:
        n = len(self.differences)
        return T_975[n - 1] * self.spread / math.sqrt(n) if 1 < n <= len(T_975) else math.nan

    @property
    def verdict(self) -> str:
        """'above', 'below' (the 95% interval excludes 0) or 'within the noise'."""
        if math.isnan(self.half_width) or abs(self.mean) <= self.half_width:
            return "within the noise"
        return "above" if self.mean > 0 else "below"


# Two-sided 95% quantiles of Student's t with 1..10 degrees of freedom (index = degrees of freedom).
T_975 = (math.nan, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def ensure_evaluation(run: str, suite: str, evaluate: bool = True, threads: int | None = None) -> bool:
    """Evaluate `run` with `suite`: measures what is missing or was measured under another protocol
    (e.g. an older corruption generator) and reuses the rest; with evaluate=False only say whether a
    finished evaluation is there."""
    if not evaluate:
        return "summary" in (RunFolder(ROOT / run).evaluation(suite) or {})
    robustrain(["eval", run, "--suite", suite, "--no-progress"], threads)
    return True


def write_study(study: dict, render, doc: Path, source: Path) -> None:
    """A study's page (render(study)) and its JSON source beside it."""
    source.write_text(json.dumps(study, indent=1) + "\n")
    doc.write_text(render(study))
    print(f"wrote {doc.relative_to(ROOT)} and {source.relative_to(ROOT)}")


def read_metrics(run: str) -> list[dict]:
    """The per-epoch records of a run's metrics.jsonl."""
    return RunFolder(ROOT / run).metrics()


def provenance() -> str:
    """One line naming the code and the machine a results page was made with."""
    from robustrain.repro import commit

    return (f"Code: commit {commit()}. Machine: {platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}.")
