"""Child processes in their own process group, so that stopping one at its time limit also stops the
processes it started (a study's training runs, data loader workers, bench/gpu.py's stage processes),
which would otherwise keep the cores or the GPU busy after it. bench/lease.py and bench/cpu_studies.py
run their stages and studies this way."""

from __future__ import annotations

import os
import signal
import subprocess


def start(command: list[str], **popen) -> subprocess.Popen:
    """`subprocess.Popen(command, **popen)` as the leader of a new process group."""
    return subprocess.Popen(command, start_new_session=True, **popen)


def wait_or_stop(process: subprocess.Popen, seconds: float) -> int | None:
    """The exit code of `process` (started by `start`), or None when it was still running after
    `seconds` and was killed with every process of its group."""
    try:
        return process.wait(timeout=max(seconds, 0.0))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None
