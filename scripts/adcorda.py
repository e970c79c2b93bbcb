"""Refine the CPU-sized standard model with AdCorDA, in full precision and with 4- and 2-bit weights,
against fine-tuning on the original training set for the same epochs; write docs/results/adcorda.md.

    python scripts/adcorda.py            # from the project root, in the project's venv
    python scripts/adcorda.py --no-train # only render the runs that have finished

Starts from runs/baselines/standard (configs/cpu/standard_cifar10.yaml, trained first if missing).
Quantized starts are made with `robustrain quantize`; every run goes to runs/adcorda/<name>. Finished
runs are not repeated and stopped ones are resumed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from common import ROOT, ensure_run, provenance

DOC = ROOT / "docs/results/adcorda.md"
START = "runs/baselines/standard"
BITS = (None, 4, 2)


def suffix(bits: int | None) -> str:
    return "" if bits is None else f"-w{bits}bit"


def ensure_quantized(bits: int, train: bool) -> dict | None:
    run = f"runs/adcorda/standard{suffix(bits)}"
    if not (ROOT / run / "results.json").is_file():
        if not train:
            return None
        argv = ["quantize", START, "--bits", str(bits), "--out", run]
        print("$ robustrain", " ".join(argv), flush=True)
        subprocess.run([sys.executable, "-m", "robustrain", *argv], cwd=ROOT, check=True)
    return json.loads((ROOT / run / "results.json").read_text())


def main() -> None:
    train = "--no-train" not in sys.argv[1:]
    start = ensure_run("configs/cpu/standard_cifar10.yaml", START, train=train)
    rows = []
    for bits in BITS:
        initial = start if bits is None else (ensure_quantized(bits, train) if start is not None else None)
        init = START if bits is None else f"runs/adcorda/standard{suffix(bits)}"
        overrides = ("--set", f"init.path={init}") + (() if bits is None else ("--set", f"model.weight_bits={bits}"))
        refined = finetuned = None
        if initial is not None:
            refined = ensure_run("configs/cpu/adcorda_cifar10.yaml", f"runs/adcorda/adcorda{suffix(bits)}", *overrides,
                                 train=train)
            finetuned = ensure_run("configs/cpu/finetune_cifar10.yaml", f"runs/adcorda/finetune{suffix(bits)}",
                                   *overrides, train=train)
        rows.append((bits, initial, finetuned, refined))
    DOC.write_text(render(rows))
    print(f"wrote {DOC.relative_to(ROOT)}")


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def counts(bits: int | None) -> dict | None:
    path = ROOT / f"runs/adcorda/adcorda{suffix(bits)}/corrected/counts.json"
    return json.loads(path.read_text()) if path.is_file() else None


def render(rows) -> str:
    lines = [
        "# AdCorDA at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/adcorda.py` (from the project root, in the project's virtualenv), which",
        "runs",
        "",
        "    robustrain quantize runs/baselines/standard --bits K --out runs/adcorda/standard-wKbit      # K = 4, 2",
        "    robustrain train --config configs/cpu/adcorda_cifar10.yaml --out runs/adcorda/adcorda[-wKbit] \\",
        "        --set init.path=START [--set model.weight_bits=K]",
        "    robustrain train --config configs/cpu/finetune_cifar10.yaml --out runs/adcorda/finetune[-wKbit] \\",
        "        --set init.path=START [--set model.weight_bits=K]",
        "",
        "Starting model: the standard small CNN of docs/results/baselines.md (width 16, 5 epochs,",
        "runs/baselines/standard), and its post-training quantizations to 4 and 2 bits (symmetric, per",
        "output channel, every convolution and linear layer). AdCorDA: correction of every misclassified",
        "training image (loss-descending PGD toward its label, eps 8/255, step 2/255, up to 10 steps, stop at",
        "the first success, failures kept), then 3 epochs of SGD (lr 0.01, cosine, batch 128) on the",
        "corrected set with Deep CORAL (weight 1) on the penultimate features against random batches of the",
        "original set. Baseline: 3 epochs of standard training on the original set with the same optimiser,",
        "schedule and starting weights. Quantized runs keep their weights quantized (fake-quant + STE).",
        "Test: clean accuracy and PGD-20 (L-inf, eps 8/255, step 2/255, one random start) on all 10,000",
        "test images of `../shared/data/cifar10-jpeg` (standard error about 0.4 points at 75% clean).",
        "The runs were trained one process at a time beside other jobs, each with one thread.",
        provenance(),
        "",
        "| weights | start clean | fine-tune clean | AdCorDA clean | AdCorDA − fine-tune | start PGD-20 | "
        "fine-tune PGD-20 | AdCorDA PGD-20 | passes / image: fine-tune, AdCorDA |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    readings, verdicts = [], {"above": [], "level with": [], "below": []}
    for bits, initial, finetuned, refined in rows:
        label = "full precision" if bits is None else f"{bits}-bit"
        if initial is None or finetuned is None or refined is None:
            lines.append(f"| {label} | not run yet | | | | | | | |")
            continue
        passes = [r["cost"]["forward_backward_per_image"] for r in (finetuned, refined)]
        delta = refined["clean_acc"] - finetuned["clean_acc"]
        lines.append(f"| {label} | {pct(initial['clean_acc'])} | {pct(finetuned['clean_acc'])} | "
                     f"{pct(refined['clean_acc'])} | {100 * delta:+.2f} | {pct(initial['pgd']['acc'])} | "
                     f"{pct(finetuned['pgd']['acc'])} | {pct(refined['pgd']['acc'])} | {passes[0]:.2f}, {passes[1]:.2f} |")
        c = counts(bits)
        gain = refined["clean_acc"] - initial["clean_acc"]
        # Unpaired binomial standard errors on the 10,000 test images (conservative: both models
        # are tested on the same images).
        tolerance = 2 * math.sqrt(sum(r["clean_acc"] * (1 - r["clean_acc"]) for r in (refined, finetuned)) / 10000)
        readings.append(
            f"- {label}: the correction changed {c['corrected']} of the {c['misclassified']} misclassified training "
            f"images ({c['failed']} failed). AdCorDA moved clean accuracy {100 * gain:+.2f} points from the start and "
            f"{100 * delta:+.2f} points against fine-tuning for the same epochs "
            + (f"(beyond two standard errors of the difference, ±{100 * tolerance:.1f})." if abs(delta) > tolerance
               else f"(within two standard errors of the difference, ±{100 * tolerance:.1f}: no measurable "
                    "difference).")
            + f" PGD-20 accuracy {pct(initial['pgd']['acc'])}% -> {pct(refined['pgd']['acc'])}%.")
        verdicts["level with" if abs(delta) <= tolerance else "above" if delta > 0 else "below"].append(label)
    lines += ["", "Accuracies in %. Passes: forward+backward passes per training image, the correction included.",
              "", "## Reading", "", *readings, "",
              "In clean accuracy AdCorDA ended " + "; ".join(f"{side} fine-tuning for {', '.join(labels)}"
                                                              for side, labels in verdicts.items() if labels) + ".", "",
              "The paper claims over 5 points on CIFAR-100 with larger networks and longer refinement; this is a",
              "72k-parameter network on CIFAR-10 refined for 3 epochs, and the table says what that shows at this",
              "scale. The procedure follows our reading of the abstract (see the method's docstring and",
              "`configs/cpu/adcorda_cifar10.yaml`); the paper's own hyper-parameters were not available."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
