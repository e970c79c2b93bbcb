"""Train Auxiliary Training and its baselines on CIFAR-10 at CPU size, evaluate their corruption
robustness (15 corruptions x 5 severities) and write docs/results/auxiliary.md.

    python scripts/auxiliary.py            # from the project root, in the project's venv
    python scripts/auxiliary.py --no-train # only render the runs and evaluations that have finished

Runs: standard training (runs/baselines/standard), the same 4 views as plain augmentation,
Auxiliary Training, and Auxiliary Training without selective BN (runs/auxiliary/<name>); each is
evaluated with the corruptions suite. Finished runs and evaluations are not repeated.
"""

from __future__ import annotations

import json
import math
import sys

from common import ROOT, commands, cost_table, epoch_rows, provenance, read_metrics, train_evaluate_report

SUITE = "corruptions"
DOC = ROOT / "docs/results/auxiliary.md"
REPORT = ROOT / "docs/results/auxiliary-eval"
RUNS = {
    "standard": ("configs/cpu/standard_cifar10.yaml", "runs/baselines/standard", ()),
    "views_as_augmentation": ("configs/cpu/standard_views_cifar10.yaml", "runs/auxiliary/standard_views", ()),
    "auxiliary": ("configs/cpu/auxiliary_cifar10.yaml", "runs/auxiliary/auxiliary", ()),
    "auxiliary_no_selective_bn": ("configs/cpu/auxiliary_cifar10.yaml", "runs/auxiliary/auxiliary_no_selective_bn",
                                  ("--set", "method.selective_bn=false")),
}


def main() -> None:
    train = "--no-train" not in sys.argv[1:]
    finished = train_evaluate_report(RUNS, SUITE, REPORT, train)
    DOC.write_text(render(finished))
    print(f"wrote {DOC.relative_to(ROOT)}")


def summary(run: str) -> dict:
    return json.loads((ROOT / run / "eval" / f"{SUITE}.json").read_text())["summary"]["model"]


def render(finished: dict[str, str]) -> str:
    lines = [
        "# Auxiliary Training at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/auxiliary.py` (from the project root, in the project's virtualenv),",
        "which runs",
        "",
        *commands(RUNS, finished, SUITE, REPORT),
        "",
        "Setting: the small CNN (`small_cnn`, width 16, 72k parameters) for 5 epochs on all 50,000",
        "training images of `../shared/data/cifar10-jpeg` (crop + flip), SGD with Nesterov momentum,",
        "one-cycle learning rate peaking at 0.1, batch 128, seed 0, for every run. Auxiliary Training: 4",
        "heads on the last 64 x 8 x 8 feature map, views noise (20/255, clipped), blur (sigma 1), colour",
        "jitter (0.5), rotation (±30°), α = β = 0.05, γ = 1 from 6/7 of the schedule, the primary head",
        "teaching the heads (the official code's defaults). Views as augmentation: standard training with",
        "each image replaced by one of (itself, the 4 views), uniformly.",
        "Evaluation (suite corruptions): clean accuracy on all 10,000 test images; the 15 benchmark",
        "corruptions x 5 severities (CIFAR parameters, generated from the JPEG test images with seed 0) on",
        "the same fixed random 2,000 test images for every run; corruption error is the unnormalised mean",
        "over the 75 sets (the runs are compared on the same images).",
        provenance(),
        "",
        "| run | clean acc. | mean corruption error | Δ clean vs standard | corruption error change vs standard |",
        "|---|---:|---:|---:|---:|",
    ]
    if "standard" not in finished:
        return "\n".join(lines + ["", "The standard run has not finished yet."]) + "\n"
    base = summary(finished["standard"])
    rows = {}
    for name, run in finished.items():
        s = summary(run)
        rows[name] = s
        d_clean = s["clean_accuracy"] - base["clean_accuracy"]
        d_error = s["mean_corruption_error"] - base["mean_corruption_error"]
        relative = d_error / base["mean_corruption_error"]
        lines.append(f"| {name} | {100 * s['clean_accuracy']:.2f} | {100 * s['mean_corruption_error']:.2f} | "
                     f"{100 * d_clean:+.2f} | {100 * d_error:+.2f} points ({100 * relative:+.1f}% relative) |")
    lines += ["", f"Per corruption: [{REPORT.name}/report.md]({REPORT.name}/report.md).", "",
              f"![error per corruption]({REPORT.name}/corruption_errors.png)"]
    lines += cost_table(finished)
    lines += ["", "## Reading", ""]
    lines += reading(rows, base, finished)
    lines += training_log({name: run for name, run in finished.items() if name.startswith("auxiliary")})
    return "\n".join(lines) + "\n"


def training_log(runs: dict[str, str]) -> list[str]:
    """Per-epoch losses of the auxiliary runs, from their metrics.jsonl: where the merge term starts
    (at 6/7 of the schedule) it is the largest part of the loss."""
    if not runs:
        return []
    lines = ["", "## Training, per epoch", "",
             "Logged means over each epoch (`metrics.jsonl`); the merge penalty is the unweighted Σ‖W_j − W_0‖²",
             "+ ‖b_j − b_0‖², logged throughout and added to the loss (γ = 1) from 6/7 of the schedule.", "",
             "| run | epoch | train loss | auxiliary CE (sum of 4) | distillation (sum of 4) | merge penalty | test acc. |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    return lines + epoch_rows(runs, lambda m: (f"{m['train_loss']:.3f}", f"{m['aux_ce']:.3f}", f"{m['distill']:.3f}",
                                               f"{m['merge_penalty']:.1f}", f"{100 * m['test_acc']:.2f}"))


def same_losses(run_a: str, run_b: str) -> bool:
    return [m["train_loss"] for m in read_metrics(run_a)] == [m["train_loss"] for m in read_metrics(run_b)]


def reading(rows: dict, base: dict, finished: dict[str, str]) -> list[str]:
    tolerance_clean = 2 * math.sqrt(2 * base["clean_accuracy"] * (1 - base["clean_accuracy"]) / 10000)
    out = []
    for name, s in rows.items():
        if name == "standard":
            continue
        d_clean = s["clean_accuracy"] - base["clean_accuracy"]
        d_error = s["mean_corruption_error"] - base["mean_corruption_error"]
        verdict = "within noise" if abs(d_clean) <= tolerance_clean else ("higher" if d_clean > 0 else "lower")
        out.append(f"- {name}: clean accuracy {100 * d_clean:+.2f} points ({verdict}, ±{100 * tolerance_clean:.1f}), "
                   f"mean corruption error {100 * d_error:+.2f} points ({100 * d_error / base['mean_corruption_error']:+.1f}%"
                   " relative) against standard training.")
    if "auxiliary" in rows:
        aux = rows["auxiliary"]
        claim_met = aux["clean_accuracy"] - base["clean_accuracy"] >= 0.0221 and \
            (base["mean_corruption_error"] - aux["mean_corruption_error"]) / base["mean_corruption_error"] >= 0.2164
        out += ["", "The paper claims +2.21 points of accuracy and a 21.64% lower corruption error on CIFAR-100 "
                "(ResNets, 210-300 epochs). " + ("This small-scale run reaches both." if claim_met else
                                                  "This 5-epoch, 72k-parameter run does not reach them; the lines "
                                                  "above give what it does show.")]
    if {"auxiliary", "views_as_augmentation"} <= set(rows):
        aux, views = rows["auxiliary"], rows["views_as_augmentation"]
        better = "lower" if views["mean_corruption_error"] < aux["mean_corruption_error"] else "higher"
        out += ["", f"The same four corruptions as plain augmentation give a {better} corruption error than through the "
                f"auxiliary heads ({100 * views['mean_corruption_error']:.2f}% against "
                f"{100 * aux['mean_corruption_error']:.2f}%). A likely reason, not tested here: with the official "
                f"weights the corrupted views reach the shared backbone only through the heads' terms (α = β = 0.05 "
                f"against 1 for the clean primary loss), and selective BN keeps them out of the statistics used at "
                f"test time, so in 5 epochs the primary path learns little about them; the paper trains 210 "
                f"epochs. The per-epoch log below also shows the merge term, unscaled as in the official code, "
                f"becoming most of the loss once it starts."]
    if "auxiliary_no_selective_bn" in rows and "auxiliary" in rows:
        a, b = rows["auxiliary"], rows["auxiliary_no_selective_bn"]
        out.append(f"Selective BN: clean accuracy {100 * (a['clean_accuracy'] - b['clean_accuracy']):+.2f} points and "
                   f"corruption error {100 * (a['mean_corruption_error'] - b['mean_corruption_error']):+.2f} points "
                   "with it than without (the paper's ablation: 79.47% with, 76.37% without on CIFAR-100). As in "
                   "the official code, selective BN only decides which batches update the running statistics; "
                   "batch statistics normalise every view either way, so the two runs train alike"
                   + (" (the log below shows the same losses in every epoch)" if same_losses(
                       finished["auxiliary"], finished["auxiliary_no_selective_bn"]) else "")
                   + " and differ only in the statistics used at test time.")
    return out


if __name__ == "__main__":
    main()
