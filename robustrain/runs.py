"""The run folder: the one place that knows its layout.

    <run>/config.yaml                 the resolved configuration (what --resume reads)
    <run>/metrics.jsonl               one JSON record per epoch
    <run>/provenance.jsonl            one JSON record per training process: commit, torch, device, threads, from epoch
    <run>/checkpoints/                epoch-NNNN.safetensors + .json sidecars, latest.json (train/checkpoint.py)
    <run>/results.json                the end-of-training measurements and costs
    <run>/eval/<suite>.json           one file per evaluation suite (or --out name)

The trainer, `load_run`, `robustrain quantize`, the CLI, the report and the experiment scripts
read and write a run through `RunFolder`; it imports nothing of the training loop, so a run can
be loaded for evaluation without it. The configuration and the results are written atomically (a
killed process leaves the old file or the new one, never half of one); metrics are appended a line
per epoch, and a resumed run drops the lines after its checkpoint and a damaged last line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .config import load_yaml, to_dict
from .errors import RobustrainError
from .io import atomic_write_text
from .results import RunResults

CONFIG_FILE, METRICS_FILE, RESULTS_FILE = "config.yaml", "metrics.jsonl", "results.json"
PROVENANCE_FILE = "provenance.jsonl"
CHECKPOINTS_DIR, EVALUATIONS_DIR = "checkpoints", "eval"


@dataclass(frozen=True)
class RunFolder:
    """A run folder at `path` (which need not exist yet)."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def results_file(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def evaluation_file(self, suite: str) -> Path:
        return self.path / EVALUATIONS_DIR / f"{suite}.json"

    def holds_run(self) -> bool:
        return self.config_file.is_file()

    def config_mapping(self) -> dict:
        """The saved configuration as a mapping (`train.read_run_config` types it), or a
        RobustrainError naming a folder that holds no run."""
        if not self.holds_run():
            raise RobustrainError(f"{self.path} is not a run folder: it has no {CONFIG_FILE}.")
        return load_yaml(self.config_file)

    def write_config(self, config) -> None:
        atomic_write_text(self.config_file, yaml.safe_dump(to_dict(config), sort_keys=False))

    def check_new(self) -> None:
        """Refuse a folder that already holds a run or other files (a new run needs an empty one)."""
        if self.config_file.exists() or self.checkpoints.exists():
            raise RobustrainError(f"{self.path} already holds a run; pass --resume to continue it or choose another "
                                  "--out.")
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise RobustrainError(f"{self.path} exists and is not an empty folder; a run writes {CONFIG_FILE}, "
                                  f"{METRICS_FILE}, {RESULTS_FILE} and {CHECKPOINTS_DIR}/ into its folder, so choose a "
                                  "new or empty --out.")

    def check_resumable(self) -> None:
        if not self.holds_run():
            raise RobustrainError(f"cannot resume {self.path}: it holds no run ({CONFIG_FILE} is missing).")

    def metrics(self) -> list[dict]:
        """The per-epoch records, in order (none before the first epoch ends)."""
        return _read_lines(self.metrics_file)

    def append_metrics(self, record: dict) -> None:
        _append_line(self.metrics_file, record)

    def provenance(self) -> list[dict]:
        """What trained the run, a record per process that started or resumed it (none for runs made
        before runs recorded it)."""
        return _read_lines(self.path / PROVENANCE_FILE)

    def commits(self) -> list[str]:
        """The commits of the code that trained the run, in the order its processes ran (each once)."""
        return list(dict.fromkeys(record["commit"] for record in self.provenance()))

    def wall_time_s(self) -> float | None:
        """Seconds from the run's first training process's start to its results (data loading, the
        per-epoch evaluation, the final measurements and any pause included); None before it has
        finished or for a run that did not record its start."""
        records = self.provenance()
        if not (records and self.results_file.is_file()):
            return None
        started = datetime.strptime(records[0]["started"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return self.results_file.stat().st_mtime - started.timestamp()

    def devices(self) -> list[str]:
        """The devices that trained the run ("CPU", a GPU's name), each once."""
        return sorted({record["device"] for record in self.provenance()})

    def threads(self) -> list[int | None]:
        """The torch threads of the processes that trained the run, each count once, in the order they
        ran; None for processes that did not record it (those that ran before runs recorded it)."""
        return list(dict.fromkeys(record.get("threads") for record in self.provenance()))

    def append_provenance(self, record: dict) -> None:
        _append_line(self.path / PROVENANCE_FILE, record)

    def keep_metrics_before(self, epoch: int) -> None:
        """Drop the records of epochs from `epoch` on (those a resumed checkpoint does not include),
        and a damaged last line."""
        if not self.metrics_file.is_file():
            return
        kept = []
        for line in (line for line in self.metrics_file.read_text().splitlines() if line.strip()):
            try:
                if json.loads(line)["epoch"] < epoch:
                    kept.append(line)
            except (ValueError, KeyError):
                break
        atomic_write_text(self.metrics_file, "".join(line + "\n" for line in kept))

    def results(self) -> RunResults | None:
        """The end-of-training results, or None for a run that has not finished."""
        return RunResults.from_json(json.loads(self.results_file.read_text())) if self.results_file.is_file() else None

    def write_results(self, results: RunResults) -> None:
        atomic_write_text(self.results_file, json.dumps(results.to_json(), indent=1))

    def evaluation(self, suite: str) -> dict | None:
        """The evaluation written for `suite`, or None."""
        path = self.evaluation_file(suite)
        return json.loads(path.read_text()) if path.is_file() else None

    def evaluations(self) -> list[str]:
        """The names of the evaluations the run holds, sorted."""
        folder = self.path / EVALUATIONS_DIR
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    @staticmethod
    def of_checkpoint(path: str | Path) -> RunFolder | None:
        """The run folder a `checkpoints/*.safetensors` file belongs to, or None for any other path."""
        path = Path(path)
        if path.suffix == ".safetensors" and path.parent.name == CHECKPOINTS_DIR:
            return RunFolder(path.parent.parent)
        return None


def _read_lines(path: Path) -> list[dict]:
    """The JSON records of a JSON-lines file, in order (none when it does not exist)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
