"""Helpers shared by the experiment scripts: run a config once, describe the machine."""

from __future__ import annotations

import json
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


def provenance() -> str:
    """One line naming the code and the machine a results page was made with."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (f"Code: commit {commit.stdout.strip() or 'unknown'}. Machine: {platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}.")
