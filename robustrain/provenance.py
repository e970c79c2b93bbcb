"""What made a result: the code's commit and the machine, recorded with every training process of a
run (`provenance.jsonl` in its folder) and on every results page and reproduction entry."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch

# The project root (a checkout): its git names the code; studies and reproductions resolve their
# configs and run folders against it.
PROJECT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The commit of the code that runs: ROBUSTRAIN_COMMIT where the sender set it (a copy of the
    tree sent to a GPU machine may carry a stale .git: one lease reported the session's first
    commit, not the one sent), else the checkout's, else "unknown"."""
    if os.environ.get("ROBUSTRAIN_COMMIT"):
        return os.environ["ROBUSTRAIN_COMMIT"]
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True)
    except OSError:  # no git on the machine
        found = None
    return (found.stdout.strip() if found else "") or "unknown"


def device_name(device: torch.device) -> str:
    """"CPU", or the GPU's name (e.g. "NVIDIA H100 80GB HBM3")."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def process_record(device: torch.device, from_epoch: int) -> dict:
    """What a training process appends to its run's provenance.jsonl when it starts (or resumes at
    `from_epoch`): the commit, torch, the device, the machine and the torch threads the process has
    (a study may give each of its runs a share of the cores), and when."""
    return {"from_epoch": from_epoch, "commit": commit(), "torch": torch.__version__, "device": device_name(device),
            "machine": platform.machine(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
