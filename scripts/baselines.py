"""Train and evaluate the CPU-sized baselines on CIFAR-10 and write docs/results/baselines.md.

    python scripts/baselines.py            # from the project root, in the project's venv
    python scripts/baselines.py --no-train # only render the runs and evaluations that have finished

Each run goes to runs/baselines/<method> and is evaluated with the standard suite
(runs/baselines/<method>/eval/standard.json); a finished run or evaluation is not repeated and a
stopped one is resumed, so the script can be re-run after an interruption. The side-by-side report
goes to docs/results/baselines-eval/.
"""

from __future__ import annotations

import json
import sys

from robustrain.report import write_report
from robustrain.study import PROJECT, ensure_evaluation, ensure_run, provenance

METHODS = ("standard", "pgd_at", "trades", "fast_at")
DOC = PROJECT / "docs/results/baselines.md"
REPORT = PROJECT / "docs/results/baselines-eval"


def main() -> None:
    train = "--no-train" not in sys.argv[1:]
    rows = [(m, ensure_run(f"configs/cpu/{m}_cifar10.yaml", f"runs/baselines/{m}", train=train)) for m in METHODS]
    evaluated = [m for m, r in rows if r is not None and ensure_evaluation(f"runs/baselines/{m}", "standard", train)]
    text = render(rows)
    if evaluated:
        write_report([PROJECT / "runs/baselines" / m for m in evaluated], REPORT, suite="standard")
        text += render_evaluation(evaluated)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(PROJECT)}")


def reading(methods: list[str]) -> list[str]:
    """What the numbers say, computed from them."""
    summaries = {m: json.loads((PROJECT / "runs/baselines" / m / "eval/standard.json").read_text())["summary"]["model"]
                 for m in methods}
    lines = ["", "### Reading", ""]
    standard = summaries.get("standard")
    for method, s in summaries.items():
        attacks = s["attack_accuracy"]
        parts = []
        if "pgd20" in attacks and "autoattack" in attacks:
            parts.append(f"AutoAttack is {100 * (attacks['pgd20'] - attacks['autoattack']):.1f} points below PGD-20")
        if standard is not None and method != "standard":
            parts.append(f"corruption error {100 * (s['corruption_error'] - standard['corruption_error']):+.2f} points "
                         f"and clean accuracy {100 * (s['clean_accuracy'] - standard['clean_accuracy']):+.2f} points "
                         "against standard training")
        if standard is not None and method != "standard":
            better = [name.replace("_", " ") for name, accuracy in s["corruption_accuracy"].items()
                      if sum(accuracy) > sum(standard["corruption_accuracy"][name])]
            parts.append("lower error than standard training under " + (", ".join(better) or "no corruption"))
        if parts:
            lines.append(f"- {method}: " + "; ".join(parts) + ".")
    return lines


def render_evaluation(methods: list[str]) -> str:
    """The report's tables, pointing at its plots, with the commands that made them."""
    report = (REPORT / "report.md").read_text().split("\n")
    body = [line.replace("](", f"]({REPORT.name}/") if line.startswith("![") else line for line in report[1:]]
    body = [line.replace("## ", "### ") for line in body]
    return "\n".join([
        "", "## Evaluation with the standard suite", "",
        "Made by the same script, which runs for each method",
        "",
        "    robustrain eval runs/baselines/<method> --suite standard",
        "    robustrain report " + " ".join(f"runs/baselines/{m}" for m in methods)
        + f" --suite standard --out docs/results/{REPORT.name}",
        "",
        "The eval time column is the time of the measurements of each run on this machine (2 CPU threads,",
        "sometimes beside other jobs). Corruptions are generated on the fly from the JPEG test images with",
        "the CIFAR table and seed 0 (see docs/corruptions.md); they are statistically, not bitwise, the",
        "released CIFAR-10-C.",
        *body, *reading(methods)]) + "\n"


def render(rows) -> str:
    lines = [
        "# Baselines at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/baselines.py` (from the project root, in the project's",
        "virtualenv), which runs, for each method,",
        "",
        "    robustrain train --config configs/cpu/<method>_cifar10.yaml --out runs/baselines/<method>",
        "",
        "Setting: the small CNN (`small_cnn`, width 16, 72k parameters), 5 epochs over all 50,000",
        "training images of `../shared/data/cifar10-jpeg` (crop + flip), SGD with Nesterov momentum,",
        "one-cycle learning rate peaking at 0.1, batch 128, channels-last, fp32, seed 0.",
        "Evaluation on all 10,000 test images: clean accuracy and PGD-20 (L-inf, eps 8/255,",
        "step 2/255, one random start, BN in eval mode). The images are the JPEG export, so",
        "numbers differ slightly from the official pixels. Wall-clock columns depend on what else the",
        "machine was doing; the pass counts do not.",
        provenance(),
        "",
        "| method | clean acc | PGD-20 acc | fwd+bwd passes / image | train time | train img/s |",
        "|---|---|---|---|---|---|",
    ]
    for method, r in rows:
        if r is None:
            lines.append(f"| {method} | not run yet | | | | |")
            continue
        cost = r.cost
        lines.append(f"| {method} | {100 * r.model.clean_acc:.2f}% | {100 * r.model.pgd.acc:.2f}% | "
                     f"{cost.forward_backward_per_image:.0f} | {cost.train_time_s / 60:.1f} min | "
                     f"{cost.images_per_s:.0f} |")
    results = dict(rows)
    standard = results["standard"]
    lines += ["", "## Reading", ""]
    for method in METHODS[1:]:
        r = results[method]
        if r is None:
            continue
        lines.append(f"- {method}: PGD-20 accuracy {100 * (r.model.pgd.acc - standard.model.pgd.acc):+.2f} points and "
                     f"clean accuracy {100 * (r.model.clean_acc - standard.model.clean_acc):+.2f} points against "
                     f"standard training, at {r.cost.forward_backward_per_image:.0f}x its passes.")
    lines += ["- These are 5-epoch runs of a 72k-parameter network, far below what the papers report for",
              "  ResNets and WRNs trained for 76-200 epochs; `configs/paper/` holds those settings, for a GPU."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
