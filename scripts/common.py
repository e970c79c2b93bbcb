"""Helpers shared by the experiment scripts: run a config once, describe the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def ensure_run(config: str, run: str, *overrides: str, train: bool = True) -> dict | None:
    """Train `config` into `run` unless it has finished; resume it if it was stopped. Returns its
    results; with train=False, returns None for a run that has not finished instead of training it."""
    folder = ROOT / run
    if not (folder / "results.json").is_file():
        if not train:
            return None
        if (folder / "config.yaml").is_file():
            argv = ["train", "--resume", run, "--no-progress"]
        else:
            argv = ["train", "--config", config, "--out", run, "--no-progress", *overrides]
        print("$ robustrain", " ".join(argv), flush=True)
        subprocess.run([sys.executable, "-m", "robustrain", *argv], cwd=ROOT, check=True)
    return json.loads((folder / "results.json").read_text())


def ensure_evaluation(run: str, suite: str, evaluate: bool = True) -> bool:
    """Evaluate `run` with `suite`: measures what is missing or was measured under another protocol
    (e.g. an older corruption generator) and reuses the rest; with evaluate=False only say whether a
    finished evaluation is there."""
    path = ROOT / run / "eval" / f"{suite}.json"
    if not evaluate:
        return path.is_file() and "summary" in json.loads(path.read_text())
    argv = ["eval", run, "--suite", suite, "--no-progress"]
    print("$ robustrain", " ".join(argv), flush=True)
    subprocess.run([sys.executable, "-m", "robustrain", *argv], cwd=ROOT, check=True)
    return True


Runs = dict[str, tuple[str, str, tuple[str, ...]]]
"""name -> (config file, run folder, extra `robustrain train` arguments)."""


def train_evaluate_report(runs: Runs, suite: str, report: Path, train: bool) -> dict[str, str]:
    """Train and evaluate every run (as far as `train` allows), write their side-by-side report into
    `report`; return {name: run folder} of the runs whose evaluation has finished."""
    from robustrain.report import write_report

    finished = {}
    for name, (config, run, overrides) in runs.items():
        if ensure_run(config, run, *overrides, train=train) is not None and ensure_evaluation(run, suite, train):
            finished[name] = run
    if finished:
        write_report([ROOT / run for run in finished.values()], report, suite=suite, names=list(finished))
    return finished


def commands(runs: Runs, finished: dict[str, str], suite: str, report: Path) -> list[str]:
    """The commands a results page was made with, indented for Markdown."""
    return [*[f"    robustrain train --config {config} --out {run} {' '.join(overrides)}".rstrip()
              for config, run, overrides in runs.values()],
            f"    robustrain eval RUN --suite {suite}            # each run; every (width, λ) setting of a conditioned one",
            "    robustrain report " + " ".join(runs[n][1] for n in finished) + f" --suite {suite} \\",
            "        --names " + ",".join(finished) + f" --out {report.relative_to(ROOT)}"]


def read_metrics(run: str) -> list[dict]:
    """The per-epoch records of a run's metrics.jsonl."""
    return [json.loads(line) for line in (ROOT / run / "metrics.jsonl").read_text().splitlines()]


def epoch_rows(runs: dict[str, str], cells) -> list[str]:
    """One Markdown table row per epoch of each run: name, epoch, then cells(record)."""
    return [f"| {name} | {m['epoch'] + 1} | " + " | ".join(cells(m)) + " |"
            for name, run in runs.items() for m in read_metrics(run)]


def cost_table(runs: dict[str, str]) -> list[str]:
    """Training cost of each run from its results and metrics, as a Markdown section."""
    lines = ["", "## Training cost", "",
             "Forward+backward passes per training image (a pass counter on the model), wall-clock training time",
             "and speed as the runs logged them, peak memory (the process's peak resident size on this CPU; – where",
             "a run predates its logging). The runs were trained under different loads of the 2-core machine (one",
             "or two torch threads, alone or beside another run), so passes per image compare the methods' work;",
             "times only say that each run fits this machine.", "",
             "| run | passes per image | training time (min) | images/s | peak memory (MiB) |",
             "|---|---:|---:|---:|---:|"]
    for name, run in runs.items():
        cost = json.loads((ROOT / run / "results.json").read_text())["cost"]
        peaks = [m["peak_memory_mb"] for m in read_metrics(run) if "peak_memory_mb" in m]
        lines.append(f"| {name} | {cost['forward_backward_per_image']:.2f} | {cost['train_time_s'] / 60:.1f} | "
                     f"{cost['images_per_s']:.0f} | {f'{max(peaks):.0f}' if peaks else '–'} |")
    return lines


def provenance() -> str:
    """One line naming the code and the machine a results page was made with."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (f"Code: commit {commit.stdout.strip() or 'unknown'}. Machine: {platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}.")
