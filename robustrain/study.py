"""Method studies: arms (a config and its overrides, possibly starting from another arm's run of the
same seed) trained with several seeds, compared arm against baseline by per-seed paired differences
of the study's metrics: clean accuracy with corruption error (measured by a suite) or with PGD-20
accuracy (the run's own final evaluation). Each run is its own `python -m robustrain` process, `jobs`
at a time with an equal share of the cores (one process per core trains the most small runs per hour
on a 2-core CPU). The scripts/ studies (auxiliary, ews, aft, oat) and `robustrain repro`'s
method-against-baseline experiments are such studies.

A study's JSON source keeps every finished run's record (its measurements, cost, the commits that
trained it and the fingerprint of its resolved configuration). A run whose folder is gone (a new
checkout, another machine) is taken from that record instead of trained again, as long as the run
would train the same configuration now: so a study longer than one session on this machine is
completed over several, each committing the runs it finished."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import to_dict
from .errors import RobustrainError
from .io import atomic_write_text
from .provenance import PROJECT, commit, device_name
from .results import RunResults
from .runs import RunFolder
from .train.run_config import read_run_config


def ensure_run(config: str, run: str, *overrides: str, train: bool = True,
               threads: int | None = None) -> RunResults | None:
    """Train `config` into `run` unless it has finished; resume it if it was stopped. Returns its
    results; with train=False, returns None for a run that has not finished instead of training it.
    threads: the run's torch threads (default: torch's, every core)."""
    folder = RunFolder(PROJECT / run)
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
    status = subprocess.run([sys.executable, "-m", "robustrain", *argv], cwd=PROJECT, env=env).returncode
    if status != 0:
        raise RobustrainError(f"robustrain {' '.join(argv[:3])} ... exited with status {status}; its own message "
                              "above says why (run it again: it resumes).")


def count_of(n: int, noun: str) -> str:
    """"1 run", "3 runs"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def threads_in_words(threads: list[int | None] | None) -> str:
    """A run's torch threads (RunFolder.threads, kept in its record) in words: "1 thread", "1 and 2
    threads", "threads not recorded" (runs made before runs recorded them), "2 threads, partly not
    recorded" (resumed by a process that recorded them)."""
    known = [t for t in threads or [] if t is not None]
    if not known:
        return "threads not recorded"
    return (" and ".join(map(str, known)) + (" thread" if known == [1] else " threads")
            + (", partly not recorded" if None in threads else ""))


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

    def fingerprint(self) -> str:
        """The fingerprint of the configuration this run trains (what its folder's config.yaml will hold)."""
        from .cli import train_config

        return fingerprint(train_config(["--config", self.config, "--out", self.run, *self.overrides]))


def fingerprint(config) -> str:
    """A short hash of a resolved run configuration (a RunConfig): equal exactly when two runs train
    with the same settings, the seed, data, epochs and starting point included, but not the folder the
    data is read from (the same dataset on another machine trains the same run)."""
    settings = to_dict(config)
    settings["data"] = {key: value for key, value in settings["data"].items() if key != "root"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def ensure_runs(specs: list[RunSpec], train: bool, jobs: int = 1, suite: str | None = None,
                deadline: float | None = None, expected_s: dict[str, float] | None = None,
                threads: int | None = None) -> dict[str, RunResults | None]:
    """ensure_run for every spec, `jobs` processes at a time, each with `threads` torch threads (by
    default an equal share of the cores: one process per core is how this 2-core machine trains the
    most small runs per hour; give fewer when other processes share the machine); a spec
    with `after` starts when that run has finished (and not at all if it did not). With `suite`, each
    run is evaluated with it as soon as it has finished (ensure_evaluation), so that a study cut off
    keeps every run it finished. With `deadline` (a time.monotonic() value), a run that has not
    finished is not started when its expected seconds (`expected_s`, by run folder; 0 where unknown)
    would take it past the deadline, so that the time left goes to runs that can finish in it.
    Returns {run folder: results, or None for one that has not finished (or was not started)}."""
    threads = threads or threads_per_job(jobs)
    futures: dict[str, Future] = {}

    def ensure(spec: RunSpec) -> RunResults | None:
        # The pool starts tasks in submission order, so `after` is running or done: waiting cannot deadlock.
        if spec.after is not None and futures[spec.after].result() is None:
            return None
        expected = (expected_s or {}).get(spec.run, 0.0)
        if (train and deadline is not None and time.monotonic() + expected > deadline
                and RunFolder(PROJECT / spec.run).results() is None):
            print(f"{spec.run}: not started: expected to take {expected / 60:.0f} min, "
                  f"{max(deadline - time.monotonic(), 0) / 60:.0f} min left before the deadline", flush=True)
            return None
        results = ensure_run(spec.config, spec.run, *spec.overrides, train=train, threads=threads)
        if results is not None and suite is not None and train:
            ensure_evaluation(spec.run, suite, threads=threads)
        return results

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for spec in specs:
            if spec.after is not None and spec.after not in futures:
                raise ValueError(f"run {spec.run} starts from {spec.after}, which is not listed before it.")
            futures[spec.run] = pool.submit(ensure, spec)
        return {run: future.result() for run, future in futures.items()}


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

    def summary(self) -> dict:
        """As a study's JSON source holds a compared metric."""
        return {"differences": list(self.differences), "mean": self.mean, "sd": self.spread,
                "ci95_half_width": self.half_width, "verdict": self.verdict}


def comparison_key(arm: str, baseline: str) -> str:
    """How a study's JSON source names the comparison of `arm` with `baseline` (each an arm, or one
    setting of a conditioned arm: `record_key`)."""
    return f"{arm} - {baseline}"


def compared(key: str) -> tuple[str, str]:
    """The arm and the baseline of a `comparison_key`."""
    arm, baseline = key.split(" - ")
    return arm, baseline


def record_key(arm: str, setting: str = "") -> str:
    """How a study's JSON source names an arm's records: the arm, or `arm@lambda=0` for one test-time
    setting of a conditioned arm."""
    return f"{arm}@{setting}" if setting else arm


def arm_of(key: str) -> str:
    """The arm of a `record_key`."""
    return key.partition("@")[0]


# Two-sided 95% quantiles of Student's t with 1..10 degrees of freedom (index = degrees of freedom).
T_975 = (math.nan, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def ensure_evaluation(run: str, suite: str, evaluate: bool = True, threads: int | None = None) -> bool:
    """Evaluate `run` with `suite`: measures what is missing or was measured under another protocol
    (e.g. an older corruption generator) and reuses the rest; with evaluate=False only say whether a
    finished evaluation is there."""
    if not evaluate:
        return "summary" in (RunFolder(PROJECT / run).evaluation(suite) or {})
    robustrain(["eval", run, "--suite", suite, "--no-progress"], threads)
    return True


def write_study(study: dict, render, doc: Path, source: Path) -> None:
    """A study's page (render(study)) and its JSON source beside it, each replaced whole; a render that
    fails leaves both as they were, so the page never disagrees with its source."""
    page = render(study)
    atomic_write_text(source, json.dumps(study, indent=1) + "\n")
    atomic_write_text(doc, page)
    print(f"wrote {doc.relative_to(PROJECT)} and {source.relative_to(PROJECT)}")


def read_metrics(run: str) -> list[dict]:
    """The per-epoch records of a run's metrics.jsonl."""
    return RunFolder(PROJECT / run).metrics()


def provenance(trained_at: list[list[str]] | None = None, trained_on: list[list[str]] | None = None) -> str:
    """One line naming the code and the machine a results page was made with; with `trained_at` (per
    run, the commits its provenance.jsonl names), also the code that trained the runs, and with
    `trained_on` (per run, its devices) the devices, with how many runs each trained where there are
    several."""
    machine = f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}."
    if not trained_at:  # no runs (yet)
        return f"Code: commit {commit()}. {machine}"
    commits = sorted({c for run in trained_at for c in run})
    unrecorded = sum(not run for run in trained_at)
    trained = (f"runs trained at commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}" if commits else "")
    devices = Counter(device for run in trained_on or [] for device in run)
    if devices:
        trained += " on " + (" and ".join(f"{device} ({count_of(n, 'run')})" for device, n in sorted(devices.items()))
                             if len(devices) > 1 else next(iter(devices)))
    if unrecorded:
        trained += ("; " if trained else "") + (f"{unrecorded} of {len(trained_at)} runs trained before runs "
                                                "recorded their commit")
    return f"Code: {trained}; this page made at commit {commit()}. {machine}"


PROTOCOLS = {"clean_acc": "all 10,000 test images of cifar10-jpeg",
             "corruption_error": "unnormalised mean error over the suite's corruptions and severities (suite "
                                 "corruptions: the 15 benchmark corruptions x 5 severities, CIFAR table, generator v3, "
                                 "seed 0) on the suite's fixed random test images",
             "pgd_acc": "PGD-20 (L-inf, eps 8/255, step 2/255, one random start, BN in eval mode) of the run's final "
                        "evaluation, on the test images its eval.pgd_limit names (all when unset)",
             "passes_per_image": "forward+backward passes per training image drawn by the run itself",
             "budget_passes": "forward+backward passes per training-set image, the run it started from included",
             "verdict": "paired per-seed differences; 'above'/'below' when the two-sided 95% t interval of their "
                        "mean excludes 0, else 'within the noise'"}
LABELS = {"clean_acc": "clean acc", "corruption_error": "corruption error", "pgd_acc": "PGD-20 acc"}


@dataclass(frozen=True)
class Arm:
    """label: how pages name it; config and overrides (`--set` settings): its runs. starts_from: the
    arm whose run of the same seed it is initialised from (`--init`), trained first. seeds: its own
    seeds when not the study's (an arm too costly for every seed)."""

    label: str
    config: str
    overrides: tuple[str, ...] = ()
    starts_from: str | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Study:
    """name: runs go to runs/<name>/<arm>-s<seed> (runs/<name>-tiny with tiny). comparisons: (arm,
    baseline) pairs. tiny: overrides that make every run a few seconds long (a check of the script).
    metrics: what the comparisons difference; suite: the evaluation suite that measures clean accuracy
    and corruption error (None: no suite, clean and PGD-20 accuracy from the run's own results)."""

    name: str
    arms: dict[str, Arm]
    comparisons: tuple[tuple[str, str], ...]
    tiny: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    suite: str | None = "corruptions"
    metrics: tuple[str, ...] = ("clean_acc", "corruption_error")
    jobs: int = 2

    def run_folder(self, arm: str, seed: int, tiny: bool = False, runs: str = "runs") -> str:
        return f"{runs}/{self.name}{'-tiny' if tiny else ''}/{arm}-s{seed}"

    def spec(self, arm: str, seed: int, tiny: bool = False, runs: str = "runs", extra: tuple[str, ...] = ()) -> RunSpec:
        """The run of `arm` with `seed` in folder `runs` (relative to the project, or absolute); extra:
        `--set` settings after the arm's own (a device, a data root)."""
        a = self.arms[arm]
        sets = (*a.overrides, *(self.tiny if tiny else ()), *extra)
        start = self.run_folder(a.starts_from, seed, tiny, runs) if a.starts_from else None
        init = ("--init", start) if start else ()
        return RunSpec(a.config, self.run_folder(arm, seed, tiny, runs),
                       ("--seed", str(seed), *init, *(arg for setting in sets for arg in ("--set", setting))), start)

    def arm_seeds(self, arm: str, tiny: bool = False) -> tuple[int, ...]:
        seeds = self.arms[arm].seeds or self.seeds
        return seeds[:2] if tiny else seeds

    def waves(self) -> list[list[str]]:
        """The arms in training order: each wave's arms start only from arms of earlier waves (a run
        starts as soon as the run it starts from has finished, not when its whole wave has)."""
        done: list[str] = []
        waves = []
        while len(done) < len(self.arms):
            wave = [arm for arm, a in self.arms.items() if arm not in done and (a.starts_from in (None, *done))]
            if not wave:
                raise ValueError(f"study {self.name}: arms {sorted(set(self.arms) - set(done))} start from an arm "
                                 "that is missing or from each other.")
            waves.append(wave)
            done += wave
        return waves

    def main(self, record: Callable[[str, dict, dict], dict], render: Callable[[dict], str], doc: Path,
             source: Path) -> None:
        """The command line of a study script: train, evaluate and write the page and its JSON;
        --no-train renders what has finished; --tiny runs every stage tiny and prints the page; --jobs
        sets the runs at a time and --threads each one's torch threads, --data-root where the data lies,
        --hours when to start no more runs."""
        parser = argparse.ArgumentParser(description=f"the {self.name} study: train what is missing, write "
                                         f"{doc.name} and {source.name}")
        parser.add_argument("--no-train", dest="train", action="store_false", help="only render what has finished")
        parser.add_argument("--tiny", action="store_true", help="every stage tiny, the page printed (a check)")
        parser.add_argument("--jobs", type=int, default=self.jobs,
                            help=f"runs at a time, each its own process (default {self.jobs})")
        parser.add_argument("--threads", type=int, help="torch threads per run (default: the cores shared equally "
                            "among the --jobs runs; give 1 for each of two studies run side by side on two cores)")
        parser.add_argument("--data-root", metavar="DIR",
                            help="read the data from DIR instead of the configs' folder (e.g. on another machine)")
        parser.add_argument("--hours", type=float, help="start no run that would not finish within HOURS from now, by "
                            "the time its arm's recorded runs took on this device (the rest of the time goes to runs "
                            "that fit)")
        args = parser.parse_args()
        train, tiny = args.train, args.tiny
        kept = json.loads(source.read_text())["arms"] if source.is_file() and not tiny else {}
        extra = (f"data.root={args.data_root}",) if args.data_root else ()
        deadline = None if args.hours is None else time.monotonic() + 3600 * args.hours
        study = self.run(train, tiny, record, extra=extra, jobs=args.jobs, kept=kept, deadline=deadline,
                         threads=args.threads)
        if tiny:
            print(render(study))
            return
        if not train:
            refuse_to_drop_runs(kept, study["arms"], doc, source, "neither finished in runs/ nor taken from "
                                "their records (recorded without a configuration fingerprint, or their arm's "
                                "settings changed)")
        write_study(study, render, doc, source)

    def run(self, train: bool, tiny: bool, record: Callable[[str, RunResults, dict], dict], runs: str = "runs",
            extra: tuple[str, ...] = (), jobs: int | None = None, kept: dict | None = None,
            deadline: float | None = None, threads: int | None = None) -> dict:
        """Train and evaluate what `train` allows; returns {"arms": {arm: {seed: record}}, "comparisons":
        ...}. record(run, results, evaluation summary or {}) -> what the study keeps of a finished run
        besides the study's own measurements. runs, extra: see `spec`; jobs: processes at a time (default
        the study's); kept: the "arms" of the study's earlier JSON source, whose records stand for runs
        whose folders are gone (see `reusable`) and tell how long each arm's runs take; deadline (a
        time.monotonic() value): start no run expected to end after it; threads: torch threads per run
        (see `ensure_runs`)."""
        suite = ("quick" if tiny else self.suite) if self.suite else None
        jobs = jobs or self.jobs
        specs = {(arm, seed): self.spec(arm, seed, tiny, runs, extra) for wave in self.waves() for arm in wave
                 for seed in self.arm_seeds(arm, tiny)}
        reused = reusable(list(specs.values()), kept or {})
        expected = expected_wall_s(kept or {}, training_device())
        results = ensure_runs([spec for spec in specs.values() if spec.run not in reused], train, jobs, suite, deadline,
                              {spec.run: expected[arm] for (arm, _), spec in specs.items() if arm in expected},
                              threads)
        evaluated = {run for run, result in results.items()
                     if result is not None and (suite is None or ensure_evaluation(run, suite, evaluate=False))}
        arms: dict[str, dict[int, dict]] = {}
        for (arm, seed), spec in specs.items():
            for key, record_kept in reused.get(spec.run, {}).items():
                arms.setdefault(key, {})[seed] = record_kept
            if spec.run not in evaluated:
                continue
            summaries = RunFolder(PROJECT / spec.run).evaluation(suite)["summary"] if suite else {}
            for setting in results[spec.run].measurements:  # a conditioned model: one entry per λ
                summary = summaries.get(setting or "model", {})
                arms.setdefault(record_key(arm, setting), {})[seed] = {
                    "run": spec.run, **measure(spec.run, results[spec.run], setting, summary),
                    **record(spec.run, results[spec.run], summary)}
        records = {r["run"]: r for seeds in arms.values() for r in seeds.values()}  # once per run, not per λ
        return {"settings": {"arms": {arm: {"label": a.label, "config": a.config, "overrides": list(a.overrides),
                                            "starts_from": a.starts_from, "seeds": list(self.arm_seeds(arm, tiny))}
                                      for arm, a in self.arms.items()},
                             "seeds": list(self.seeds), "suite": suite, "metrics": list(self.metrics)},
                "protocols": PROTOCOLS, "arms": arms, "comparisons": self.compare(arms),
                "provenance": provenance([r["trained_at"] for r in records.values()],
                                         [r.get("trained_on", []) for r in records.values()])}

    def compare(self, arms: dict[str, dict[int, dict]]) -> dict:
        comparisons = {}
        for arm, baseline in self.comparisons:
            seeds = [s for s in self.seeds if s in arms.get(arm, {}) and s in arms.get(baseline, {})]
            if len(seeds) < 2:
                continue
            entry = {"seeds": seeds}
            for metric in self.metrics:
                entry[metric] = PairedDifference(tuple(arms[arm][s][metric] - arms[baseline][s][metric]
                                                       for s in seeds)).summary()
            comparisons[comparison_key(arm, baseline)] = entry
        return comparisons

    def commands(self) -> list[str]:
        lines = []
        for arm, a in self.arms.items():
            seeds = "" if a.seeds is None else f"  # S in {', '.join(map(str, a.seeds))} only"
            init = f" --init runs/{self.name}/{a.starts_from}-sS" if a.starts_from else ""
            lines.append(f"    robustrain train --config {a.config} --out runs/{self.name}/{arm}-sS --seed S{init}"
                         + "".join(f" --set {o}" for o in a.overrides) + seeds)
        if self.suite:
            lines.append(f"    robustrain eval runs/{self.name}/ARM-sS --suite {self.suite}")
        return lines

    def tables(self, study: dict) -> list[str]:
        """The arms (mean ± sd over seeds) and the comparisons (per-seed differences, verdicts)."""
        names = [LABELS[m] for m in self.metrics]
        lines = ["| arm | " + " | ".join(f"{n} (mean ± sd)" for n in names) + " | budget | seeds |",
                 "|---|" + "---:|" * (len(names) + 2)]
        for arm in self.arms:
            keys = [key for key in study["arms"] if arm_of(key) == arm]
            if not keys:
                lines.append(f"| {self.label(arm)} | not run yet |" + " |" * len(names) + " 0 |")
            for key in keys:
                records = list(study["arms"][key].values())
                lines.append(f"| {self.label(key)} | "
                             + " | ".join(mean_sd([r[m] for r in records]) for m in self.metrics)
                             + f" | {statistics.fmean(r['budget_passes'] for r in records):.2f} | {len(records)} |")
        lines += ["", "Budget: forward+backward passes per training-set image over the whole run, the run it started "
                  "from included.",
                  "", "| comparison | " + " | ".join(f"Δ {n} (points): per seed; mean ± 95% | verdict" for n in names)
                  + " |", "|---|" + "---|---|" * len(names)]
        for name, comp in study["comparisons"].items():
            arm, baseline = compared(name)
            cells = []
            for metric in self.metrics:
                m = comp[metric]
                cells += [", ".join(f"{100 * d:+.2f}" for d in m["differences"])
                          + f"; {100 * m['mean']:+.2f} ± {100 * m['ci95_half_width']:.2f}", m["verdict"]]
            lines.append(f"| {self.label(arm)} − {self.label(baseline)} | " + " | ".join(cells) + " |")
        return lines + verdict_rule(sorted({len(c["seeds"]) for c in study["comparisons"].values()}))

    def reading(self, study: dict, described: dict[tuple[str, str], str], limits: list[str]) -> list[str]:
        """A page's Reading section: one bullet per comparison that has run ((arm, baseline) pairs of the
        study's comparisons, described in words) with each metric's mean difference, 95% band and verdict
        (provisional while it has fewer seeds than planned), one naming those not run yet, then the study's
        limits; nothing until a described comparison has run."""
        unknown = [pair for pair in described if pair not in self.comparisons]
        if unknown:
            raise ValueError(f"study {self.name}: the described comparisons {unknown} are not among its comparisons "
                             f"{list(self.comparisons)}.")
        keys = {comparison_key(*pair): what for pair, what in described.items()}
        waiting = [what for key, what in keys.items() if key not in study["comparisons"]]
        if len(waiting) == len(keys):
            return []
        better = ", ".join(f"{LABELS[m]}: {'higher' if m.endswith('_acc') else 'lower'} is better"
                           for m in self.metrics)
        return ["", "## Reading", "", f"Mean paired differences with their 95% bands ({better}).", "",
                *(f"- {what}: " + ", ".join(f"{LABELS[m]} {stated(study['comparisons'][key][m])}" for m in self.metrics)
                  + "." + provisional(study, key) for key, what in keys.items() if key in study["comparisons"]),
                *([f"- Not run yet: {'; '.join(waiting)}."] if waiting else []),
                *limits]

    def training_minutes(self, study: dict) -> str:
        """Each arm's mean training time over its runs trained on the CPU, in minutes, in words, apart
        for each number of torch threads the runs had (a conditioned arm's run counted once, not once
        per setting)."""
        seconds = per_run(study["arms"], "train_time_s", "CPU")
        threads = {record["run"]: record.get("threads") for seeds in study["arms"].values()
                   for record in seeds.values()}
        parts = []
        for arm, a in self.arms.items():
            by_threads: dict[str, list[float]] = {}
            for run, run_seconds in sorted(seconds.get(arm, {}).items()):
                by_threads.setdefault(threads_in_words(threads[run]), []).append(run_seconds)
            if by_threads:
                parts.append(f"{a.label}: " + ", ".join(f"{statistics.fmean(group) / 60:.0f} min "
                                                        f"({count_of(len(group), 'run')}, {words})"
                                                        for words, group in by_threads.items()))
        return "; ".join(parts) or "none finished yet"

    def label(self, key: str) -> str:
        """An arm's label; `arm@lambda=0.5`, one setting of a conditioned arm, as "<label> at λ = 0.5"."""
        arm, _, setting = key.partition("@")
        return self.arms[arm].label + (f" at {setting.replace('lambda=', 'λ = ')}" if setting else "")


def measure(run: str, results: RunResults, setting: str, summary: dict) -> dict:
    """What every study keeps of a finished run at one test-time setting: clean accuracy (the suite's
    when evaluated, else the run's own), the suite's corruption error, the final PGD-20 accuracy, the
    cost, the per-epoch train loss, the commits, devices and torch threads that trained it and its
    configuration's fingerprint."""
    folder = RunFolder(PROJECT / run)
    metrics = folder.metrics()
    epochs = len(metrics)
    own = results.measurements[setting]
    measured = {"clean_acc": summary.get("clean_accuracy", own.clean_acc), "pgd_acc": own.pgd.acc,
            "train_loss_per_epoch": [m["train_loss"] for m in metrics],
            "passes_per_image": results.cost.forward_backward_per_image,
            "budget_passes": results.total_cost.forward_backward / (results.cost.images / epochs),
            "train_time_s": results.cost.train_time_s, "wall_time_s": folder.wall_time_s(),
            "trained_at": folder.commits(), "trained_on": folder.devices(), "threads": folder.threads(),
            "config_sha256": fingerprint(read_run_config(folder))}
    if "corruption_error" in summary:
        measured["corruption_error"] = summary["corruption_error"]
    return measured


def reusable(specs: list[RunSpec], kept: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Of the records in `kept` ({arm or arm@setting: {seed: record}}, as a study's JSON source holds
    them), those that stand for runs not to be trained again: {run folder: {arm or arm@setting: record}}.
    A run's records stand for it when its folder holds no finished run and every record of it carries
    the fingerprint of the configuration the spec trains now; a chain of runs (one starting from
    another) is taken whole or trained whole: a run trained again changes the runs that start from it,
    and training one needs its starting run's folder."""
    by_run: dict[str, dict[str, dict]] = {}
    for key, seeds in kept.items():
        for record in seeds.values():
            by_run.setdefault(record["run"], {})[key] = record
    taken = {spec.run for spec in specs if spec.run in by_run and RunFolder(PROJECT / spec.run).results() is None
             and {r.get("config_sha256") for r in by_run[spec.run].values()} == {spec.fingerprint()}}
    while broken := {spec.run for spec in specs if spec.run in taken and (
            (spec.after is not None and spec.after not in taken)
            or any(other.after == spec.run and other.run not in taken for other in specs))}:
        taken -= broken
    return {run: by_run[run] for run in taken}


def per_run(arms: dict[str, dict], field: str, device: str) -> dict[str, dict[str, float]]:
    """{arm: {run folder: record[field]}} over a study's records ({arm or arm@setting: {seed: record}})
    of the runs that `device` alone trained and that have the field (a conditioned run once)."""
    values: dict[str, dict[str, float]] = {}
    for key, seeds in arms.items():
        for record in seeds.values():
            if record.get(field) is not None and record.get("trained_on") == [device]:
                values.setdefault(arm_of(key), {})[record["run"]] = record[field]
    return values


def expected_wall_s(kept: dict[str, dict], device: str) -> dict[str, float]:
    """{arm: the mean wall time of its recorded runs that `device` trained}; arms with none left out."""
    return {arm: statistics.fmean(runs.values()) for arm, runs in per_run(kept, "wall_time_s", device).items()}


def training_device() -> str:
    """The device a study's runs train on here, named as their provenance names it (the configs leave
    the device to `auto`: the GPU where there is one)."""
    return device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def runs_of(arms: dict[str, dict]) -> set[str]:
    """The run folders of a study's records ({arm or arm@setting: {seed: record}})."""
    return {record["run"] for seeds in arms.values() for record in seeds.values()}


def refuse_to_drop_runs(kept: dict[str, dict], arms: dict[str, dict], doc: Path, source: Path, why: str) -> None:
    """Exit, naming them, when the records a study is about to write (`arms`) lack runs that its JSON
    source holds (`kept`, its "arms"), `why` saying how they went missing: rendering without them would
    overwrite a finished page with a poorer one (e.g. on a checkout without the run folders)."""
    lost = sorted(runs_of(kept) - runs_of(arms))
    if lost:
        named = ", ".join(lost[:3]) + (", ..." if len(lost) > 3 else "")
        sys.exit(f"{count_of(len(lost), 'run')} that {source.name} holds ({named}) {'is' if len(lost) == 1 else 'are'} "
                 f"{why}, so {doc.name} is not rewritten without them: train them again (drop --no-train).")


def verdict_rule(seed_counts: list[int]) -> list[str]:
    """How the comparisons' verdicts are reached, with the t quantile for each number of seeds they use."""
    if not seed_counts:
        return []
    quantiles = ", ".join(f"t = {T_975[n - 1]:.2f} with {n} seeds" for n in seed_counts)
    return ["", "Each comparison pairs the two arms' runs of the same seed; the verdict is above or below where "
            f"the two-sided 95% t interval of the mean difference ({quantiles}) excludes 0, else within the noise."]


def provisional(study: dict, *keys: str) -> str:
    """The sentence " Provisional: 2 of 3 seeds." while the comparisons `keys` ("arm - baseline", an arm
    possibly "arm@lambda=0") pair fewer seeds than the study plans for their arms, else nothing."""
    planned = study["settings"]["arms"]
    seeds = min(len(study["comparisons"][key]["seeds"]) for key in keys)
    wanted = min(len(planned[arm_of(name)]["seeds"]) for key in keys for name in compared(key))
    return f" Provisional: {seeds} of {wanted} seeds." if seeds < wanted else ""


def stated(difference: dict) -> str:
    """One metric of a comparison in words: "+1.23 ± 0.45 points (above)"."""
    return (f"{100 * difference['mean']:+.2f} ± {100 * difference['ci95_half_width']:.2f} points "
            f"({difference['verdict']})")


def mean_sd(values: list[float], scale: float = 100, digits: int = 2) -> str:
    """Mean ± sample sd of `values` times `scale` (percent by default); the mean alone for one value."""
    mean = f"{scale * statistics.fmean(values):.{digits}f}"
    return mean + (f" ± {scale * statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")
