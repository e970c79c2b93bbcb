"""Train the CPU-sized baselines on CIFAR-10 and write docs/results/baselines.md.

    python scripts/baselines.py            # from the project root, in the project's venv
    python scripts/baselines.py --no-train # only render the runs that have finished

Each run goes to runs/baselines/<method>; a finished run is not trained again and a
stopped one is resumed, so the script can be re-run after an interruption.
"""

from __future__ import annotations

import sys

from common import ROOT, ensure_run, provenance

METHODS = ("standard", "pgd_at", "trades", "fast_at")
DOC = ROOT / "docs/results/baselines.md"


def main() -> None:
    train = "--no-train" not in sys.argv[1:]
    rows = [(m, ensure_run(f"configs/cpu/{m}_cifar10.yaml", f"runs/baselines/{m}", train=train)) for m in METHODS]
    DOC.write_text(render(rows))
    print(f"wrote {DOC.relative_to(ROOT)}")


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
        cost = r["cost"]
        lines.append(f"| {method} | {100 * r['clean_acc']:.2f}% | {100 * r['pgd']['acc']:.2f}% | "
                     f"{cost['forward_backward_per_image']:.0f} | {cost['train_time_s'] / 60:.1f} min | "
                     f"{cost['images_per_s']:.0f} |")
    results = dict(rows)
    standard = results["standard"]
    lines += ["", "## Reading", ""]
    for method in METHODS[1:]:
        r = results[method]
        if r is None:
            continue
        lines.append(f"- {method}: PGD-20 accuracy {100 * (r['pgd']['acc'] - standard['pgd']['acc']):+.2f} points and "
                     f"clean accuracy {100 * (r['clean_acc'] - standard['clean_acc']):+.2f} points against standard "
                     f"training, at {r['cost']['forward_backward_per_image']:.0f}x its passes.")
    lines += ["- These are 5-epoch runs of a 72k-parameter network, far below what the papers report for",
              "  ResNets and WRNs trained for 76-200 epochs; `configs/paper/` holds those settings, for a GPU."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
