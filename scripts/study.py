"""A corruption-robustness study: arms (a config and its overrides) trained with several seeds,
each run evaluated with a suite, compared arm against baseline by per-seed paired differences of
clean accuracy and corruption error. scripts/auxiliary.py and scripts/ews.py are such studies."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robustrain.results import RunResults
from robustrain.runs import RunFolder

from common import ROOT, PairedDifference, RunSpec, ensure_evaluations, ensure_runs, provenance, write_study

METRICS = ("clean_acc", "corruption_error")
PROTOCOLS = {"clean_acc": "all 10,000 test images of cifar10-jpeg",
             "corruption_error": "unnormalised mean error over the suite's corruptions and severities (suite "
                                 "corruptions: the 15 benchmark corruptions x 5 severities, CIFAR table, generator v3, "
                                 "seed 0) on the suite's fixed random test images",
             "passes_per_image": "forward+backward passes per training image",
             "verdict": "paired per-seed differences; 'above'/'below' when the two-sided 95% t interval of their "
                        "mean excludes 0, else 'within the noise'"}


@dataclass(frozen=True)
class Arm:
    label: str
    config: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study:
    """name: runs go to runs/<name>/<arm>-s<seed> (runs/<name>-tiny with tiny). comparisons: (arm,
    baseline) pairs. tiny: overrides that make every run a few seconds long (a check of the script)."""

    name: str
    arms: dict[str, Arm]
    comparisons: tuple[tuple[str, str], ...]
    tiny: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    suite: str = "corruptions"
    jobs: int = 2

    def spec(self, arm: str, seed: int, tiny: bool = False) -> RunSpec:
        sets = (*self.arms[arm].overrides, *(self.tiny if tiny else ()))
        return RunSpec(self.arms[arm].config, f"runs/{self.name}{'-tiny' if tiny else ''}/{arm}-s{seed}",
                       ("--seed", str(seed), *(arg for setting in sets for arg in ("--set", setting))))

    def main(self, record: Callable[[str, dict, dict], dict], render: Callable[[dict], str], doc: Path,
             source: Path) -> None:
        """The command line of a study script: train, evaluate and write the page and its JSON;
        --no-train renders what has finished; --tiny runs every stage tiny and prints the page."""
        flags = sys.argv[1:]
        tiny = "--tiny" in flags
        study = self.run("--no-train" not in flags, tiny, record)
        if tiny:
            print(render(study))
        else:
            write_study(study, render, doc, source)

    def run(self, train: bool, tiny: bool, record: Callable[[str, RunResults, dict], dict]) -> dict:
        """Train and evaluate what `train` allows; returns {"arms": {arm: {seed: record}}, "comparisons":
        ...}. record(run, results, evaluation summary) -> what the study keeps of a finished run."""
        suite = "quick" if tiny else self.suite
        specs = {(arm, seed): self.spec(arm, seed, tiny) for arm in self.arms
                 for seed in (self.seeds[:2] if tiny else self.seeds)}
        results = ensure_runs(list(specs.values()), train, self.jobs)
        evaluated = ensure_evaluations([s.run for s in specs.values() if results[s.run] is not None], suite, train,
                                       self.jobs)
        arms: dict[str, dict[int, dict]] = {}
        for (arm, seed), spec in specs.items():
            if spec.run in evaluated:
                summary = RunFolder(ROOT / spec.run).evaluation(suite)["summary"]["model"]
                arms.setdefault(arm, {})[seed] = {"run": spec.run, "clean_acc": summary["clean_accuracy"],
                                                  "corruption_error": summary["corruption_error"],
                                                  "passes_per_image": results[spec.run].cost.forward_backward_per_image,
                                                  "train_time_s": results[spec.run].cost.train_time_s,
                                                  **record(spec.run, results[spec.run], summary)}
        return {"settings": {"arms": {arm: {"label": a.label, "config": a.config, "overrides": list(a.overrides)}
                                      for arm, a in self.arms.items()},
                             "seeds": list(self.seeds), "suite": suite},
                "protocols": PROTOCOLS, "arms": arms, "comparisons": self.compare(arms), "provenance": provenance()}

    def compare(self, arms: dict[str, dict[int, dict]]) -> dict:
        comparisons = {}
        for arm, baseline in self.comparisons:
            seeds = [s for s in self.seeds if s in arms.get(arm, {}) and s in arms.get(baseline, {})]
            if len(seeds) < 2:
                continue
            entry = {"seeds": seeds}
            for metric in METRICS:
                diff = PairedDifference(tuple(arms[arm][s][metric] - arms[baseline][s][metric] for s in seeds))
                entry[metric] = {"differences": list(diff.differences), "mean": diff.mean, "sd": diff.spread,
                                 "ci95_half_width": diff.half_width, "verdict": diff.verdict}
            comparisons[f"{arm} - {baseline}"] = entry
        return comparisons

    def commands(self) -> list[str]:
        return [*(f"    robustrain train --config {a.config} --out runs/{self.name}/{arm}-sS --seed S"
                  + "".join(f" --set {o}" for o in a.overrides) for arm, a in self.arms.items()),
                f"    robustrain eval runs/{self.name}/ARM-sS --suite {self.suite}"]

    def tables(self, study: dict) -> list[str]:
        """The arms (mean ± sd over seeds) and the comparisons (per-seed differences, verdicts)."""
        lines = ["| arm | clean acc (mean ± sd) | corruption error (mean ± sd) | passes / image | seeds |",
                 "|---|---:|---:|---:|---:|"]
        for arm, a in self.arms.items():
            records = list(study["arms"].get(arm, {}).values())
            if not records:
                lines.append(f"| {a.label} | not run yet | | | 0 |")
                continue
            lines.append(f"| {a.label} | {mean_sd([r['clean_acc'] for r in records])} | "
                         f"{mean_sd([r['corruption_error'] for r in records])} | "
                         f"{statistics.fmean(r['passes_per_image'] for r in records):.2f} | {len(records)} |")
        lines += ["", "| comparison | Δ clean (points): per seed; mean ± 95% | verdict | Δ corruption error (points): "
                  "per seed; mean ± 95% | verdict |", "|---|---|---|---|---|"]
        for name, comp in study["comparisons"].items():
            arm, baseline = name.split(" - ")
            cells = []
            for metric in METRICS:
                m = comp[metric]
                cells += [", ".join(f"{100 * d:+.2f}" for d in m["differences"])
                          + f"; {100 * m['mean']:+.2f} ± {100 * m['ci95_half_width']:.2f}", m["verdict"]]
            lines.append(f"| {self.arms[arm].label} − {self.arms[baseline].label} | " + " | ".join(cells) + " |")
        return lines


def mean_sd(values: list[float]) -> str:
    return f"{100 * statistics.fmean(values):.2f}" + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1
                                                        else "")
