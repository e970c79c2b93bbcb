"""Auxiliary Training at CPU size with the official schedule's shape, its ablations and baselines
at equal epochs and at equal cost, over 3 seeds; write docs/results/auxiliary.md and
docs/results/auxiliary.json.

    python scripts/auxiliary.py            # from the project root, in the project's venv (about 3 h here)
    python scripts/auxiliary.py --no-train # only render the runs and evaluations that have finished
    python scripts/auxiliary.py --tiny     # every stage on 512 images, 2 epochs, 2 seeds, suite quick (no page)

Every arm is trained with seeds 0, 1, 2 into runs/auxiliary/<arm>-s<seed> (two runs at a time, one
torch thread each) and evaluated with the corruptions suite; finished runs and evaluations are not
repeated and stopped ones are resumed.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass

from common import ROOT, PairedDifference, RunSpec, ensure_evaluations, ensure_runs, provenance

SUITE = "corruptions"
DOC, SOURCE = ROOT / "docs/results/auxiliary.md", ROOT / "docs/results/auxiliary.json"
AUX, VIEWS = "configs/cpu/auxiliary_step_cifar10.yaml", "configs/cpu/standard_views_step_cifar10.yaml"
SEEDS = (0, 1, 2)
JOBS = 2


@dataclass(frozen=True)
class Arm:
    label: str
    config: str
    overrides: tuple[str, ...] = ()


ARMS = {
    "standard": Arm("standard training", VIEWS, ("method.views=[]",)),
    "views": Arm("the 4 views as plain augmentation", VIEWS),
    "views-equal-cost": Arm("the 4 views as plain augmentation, 35 epochs (Auxiliary Training's passes)", VIEWS,
                            ("epochs=35", "schedule.milestones=[10.0,23.333333,30.0]")),
    "auxiliary": Arm("Auxiliary Training", AUX),
    "no-merge": Arm("Auxiliary Training without merging (γ = 0)", AUX, ("method.merge_weight=0",)),
    "no-distill": Arm("Auxiliary Training without distillation (β = 0)", AUX, ("method.distill_weight=0",)),
}
# (arm, baseline): the paper's comparison (same epochs), the same views used otherwise (same epochs
# and same cost), and each mechanism removed.
COMPARISONS = (("auxiliary", "standard"), ("auxiliary", "views"), ("auxiliary", "views-equal-cost"),
               ("no-merge", "auxiliary"), ("no-distill", "auxiliary"))
TINY = ("data.train_limit=512", "epochs=2", "schedule.milestones=[1.0]", "eval.pgd_limit=50")


def spec(arm: str, seed: int, tiny: bool) -> RunSpec:
    sets = (*ARMS[arm].overrides, *(TINY if tiny else ()))
    folder = "runs/auxiliary-tiny" if tiny else "runs/auxiliary"
    return RunSpec(ARMS[arm].config, f"{folder}/{arm}-s{seed}",
                   ("--seed", str(seed), *(arg for setting in sets for arg in ("--set", setting))))


def main() -> None:
    flags = sys.argv[1:]
    train, tiny = "--no-train" not in flags, "--tiny" in flags
    specs = {(arm, seed): spec(arm, seed, tiny) for arm in ARMS for seed in (SEEDS[:2] if tiny else SEEDS)}
    results = ensure_runs(list(specs.values()), train, JOBS)
    trained = [s.run for s in specs.values() if results[s.run] is not None]
    evaluated = ensure_evaluations(trained, "quick" if tiny else SUITE, train, JOBS)
    study = summarise(specs, results, evaluated, "quick" if tiny else SUITE)
    if tiny:
        print(json.dumps(study["comparisons"], indent=1))
        return
    SOURCE.write_text(json.dumps(study, indent=1) + "\n")
    DOC.write_text(render(study))
    print(f"wrote {DOC.relative_to(ROOT)} and {SOURCE.relative_to(ROOT)}")


def merging(run: str) -> dict:
    """The mechanism check of the weight merging, from the run's last two checkpoints (the epoch
    before merging starts and the last one): how far the primary classifier moved while merging,
    and the heads' distance to it before and after."""
    import torch
    from safetensors.torch import load_file

    folder = ROOT / run / "checkpoints"
    before, after = (load_file(path) for path in sorted(folder.glob("epoch-*.safetensors"))[-2:])
    primary = "model/fc.weight"
    heads = sorted(k for k in after if k.startswith("method/heads.") and k.endswith(".fc.weight"))

    def gap(state) -> float:
        return statistics.fmean(float((state[k] - state[primary]).norm()) for k in heads)

    moved = float((after[primary] - before[primary]).norm() / before[primary].norm())
    return {"primary_relative_change_last_epoch": moved, "head_distance_before": gap(before),
            "head_distance_after": gap(after), "primary_norm": float(torch.linalg.norm(after[primary]))}


def run_record(run: str, result: dict, suite: str) -> dict:
    from robustrain.runs import RunFolder

    folder = RunFolder(ROOT / run)
    summary = folder.evaluation(suite)["summary"]["model"]
    metrics = folder.metrics()
    record = {"run": run, "clean_acc": summary["clean_accuracy"],
              "corruption_error": summary["corruption_error"], "pgd_acc": result["pgd"]["acc"],
              "passes_per_image": result["cost"]["forward_backward_per_image"],
              "train_time_s": result["cost"]["train_time_s"],
              "train_loss_per_epoch": [m["train_loss"] for m in metrics]}
    if "merge_penalty" in metrics[-1]:
        record["merge_penalty_per_epoch"] = [m["merge_penalty"] for m in metrics]
        record["merging"] = merging(run)
    return record


def summarise(specs: dict, results: dict, evaluated: set[str], suite: str) -> dict:
    arms: dict[str, dict[int, dict]] = {}
    for (arm, seed), s in specs.items():
        if results[s.run] is not None and s.run in evaluated:
            arms.setdefault(arm, {})[seed] = run_record(s.run, results[s.run], suite)
    comparisons = {}
    for arm, baseline in COMPARISONS:
        seeds = [s for s in SEEDS if s in arms.get(arm, {}) and s in arms.get(baseline, {})]
        if len(seeds) < 2:
            continue
        entry = {"seeds": seeds}
        for metric in ("clean_acc", "corruption_error"):
            diff = PairedDifference(tuple(arms[arm][s][metric] - arms[baseline][s][metric] for s in seeds))
            entry[metric] = {"differences": list(diff.differences), "mean": diff.mean, "sd": diff.spread,
                             "ci95_half_width": diff.half_width, "verdict": diff.verdict}
        comparisons[f"{arm} - {baseline}"] = entry
    return {
        "study": "Auxiliary Training with the official schedule shape, ablations, equal-epoch and equal-cost baselines",
        "settings": {"configs": {arm: {"config": a.config, "overrides": list(a.overrides), "label": a.label}
                                 for arm, a in ARMS.items()},
                     "seeds": list(SEEDS), "suite": suite},
        "protocols": {"clean_acc": "all 10,000 test images of cifar10-jpeg",
                      "corruption_error": "unnormalised mean error over the 15 benchmark corruptions x 5 severities "
                                          "(CIFAR table, generator v3, seed 0) on a fixed random 2,000 test images",
                      "passes_per_image": "forward+backward passes per training image",
                      "verdict": "paired per-seed differences; 'above'/'below' when the two-sided 95% t interval "
                                 "of their mean excludes 0, else 'within the noise'"},
        "arms": arms, "comparisons": comparisons, "provenance": provenance(),
    }


def mean_sd(values: list[float]) -> str:
    return f"{100 * statistics.fmean(values):.2f}" + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1
                                                        else "")


def render(study: dict) -> str:
    arms = study["arms"]
    lines = [
        "# Auxiliary Training at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/auxiliary.py` (from the project root, in the project's virtualenv; the",
        "numbers are also in `docs/results/auxiliary.json`). For each arm and seed S in 0, 1, 2 it runs",
        "",
        *(f"    robustrain train --config {a.config} --out runs/auxiliary/{arm}-sS --seed S"
          + "".join(f" --set {o}" for o in a.overrides) for arm, a in ARMS.items()),
        f"    robustrain eval runs/auxiliary/ARM-sS --suite {SUITE}",
        "",
        "**Question.** Do auxiliary heads on corrupted views, with self-distillation and weight merging,",
        "make the primary classifier more accurate and less sensitive to corruptions than training on the",
        "same data, and than using the same corrupted views as plain augmentation?",
        "",
        "**Design.** Small CNN (width 16, 72k parameters), a fixed random 20,000 CIFAR-10 training images,",
        "7 epochs of SGD with the official schedule's shape: lr 0.1, ÷10 at 2, 4.67 and 6 epochs (the official",
        "60, 140, 180 of 210), weight merging (γ = 1) from 6/7 of training, after the last drop, as in the",
        "official code (the earlier one-cycle run started merging at lr 0.024 with 0.7 epoch left, and its",
        "train loss jumped from 1.22 to 3.29). Auxiliary Training costs 5 forward+backward passes per image",
        "(the clean batch and 4 views); its baselines get the same epochs, and the views as augmentation",
        "also 5 times the epochs (the same passes). Three seeds per arm; verdicts from the paired per-seed",
        "differences (same seed, same data order) with the two-sided 95% t interval (t = 4.30, 2 degrees of",
        "freedom).",
        "",
        study["provenance"],
        "",
        "| arm | clean acc (mean ± sd) | corruption error (mean ± sd) | passes / image | seeds |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm, a in ARMS.items():
        records = arms.get(arm, {})
        if not records:
            lines.append(f"| {a.label} | not run yet | | | 0 |")
            continue
        values = list(records.values())
        lines.append(f"| {a.label} | {mean_sd([r['clean_acc'] for r in values])} | "
                     f"{mean_sd([r['corruption_error'] for r in values])} | "
                     f"{statistics.fmean(r['passes_per_image'] for r in values):.2f} | {len(values)} |")
    lines += ["", "| comparison | Δ clean (points): per seed, mean ± 95% | verdict | Δ corruption error (points): "
              "per seed, mean ± 95% | verdict |", "|---|---|---|---|---|"]
    for name, comp in study["comparisons"].items():
        arm, baseline = name.split(" - ")
        cells = []
        for metric in ("clean_acc", "corruption_error"):
            m = comp[metric]
            cells += [", ".join(f"{100 * d:+.2f}" for d in m["differences"])
                      + f"; {100 * m['mean']:+.2f} ± {100 * m['ci95_half_width']:.2f}", m["verdict"]]
        lines.append(f"| {ARMS[arm].label} − {ARMS[baseline].label} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracies and errors in %. Clean accuracy on all 10,000 test images; corruption error: the",
              "unnormalised mean over the 15 benchmark corruptions x 5 severities on a fixed 2,000 test images",
              "(the same images for every run)."]
    merged = [r["merging"] for r in arms.get("auxiliary", {}).values() if "merging" in r]
    if merged:
        lines += ["", "## Does the merging act?", "",
                  "From each Auxiliary Training run's last two checkpoints (the end of epoch 6, before merging, and",
                  "the end of epoch 7): the heads' mean distance ‖W_j − W_0‖ to the primary classifier before and",
                  "after the merging epoch, and how far the primary classifier moved in it (relative to its norm).", "",
                  "| seed | ‖W_j − W_0‖ before | after | primary classifier moved | train loss epoch 6 → 7 |",
                  "|---:|---:|---:|---:|---:|"]
        for seed, r in arms["auxiliary"].items():
            m, loss = r["merging"], r["train_loss_per_epoch"]
            lines.append(f"| {seed} | {m['head_distance_before']:.3f} | {m['head_distance_after']:.3f} | "
                         f"{100 * m['primary_relative_change_last_epoch']:.1f}% | {loss[-2]:.3f} → {loss[-1]:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
