"""Train and evaluate EWS against its baselines on CIFAR-10 at CPU size; write docs/results/ews.md.

    python scripts/ews.py            # from the project root, in the project's venv
    python scripts/ews.py --no-train # only render the runs and evaluations that have finished

Corruption side (suite corruptions: clean accuracy, 15 corruptions x 5 severities): standard
training, AugMix, EWS + AugMix. Adversarial side (suite quick: clean accuracy, PGD-20): PGD-AT and
EWS + PGD-AT. Every run is a ResNet-20 on 20,000 training images for 3 epochs
(configs/cpu/ews_*_resnet20.yaml); runs go to runs/ews/<name>.
"""

from __future__ import annotations

import json
import sys

from common import ROOT, commands, cost_table, provenance, train_evaluate_report

DOC = ROOT / "docs/results/ews.md"
CORRUPTION_RUNS = {name: (f"configs/cpu/ews_{name}_resnet20.yaml", f"runs/ews/{name}", ())
                   for name in ("standard", "augmix", "augmix_ews")}
ADVERSARIAL_RUNS = {name: (f"configs/cpu/ews_{name}_resnet20.yaml", f"runs/ews/{name}", ())
                    for name in ("pgd_at", "pgd_at_ews")}


def summary(run: str, suite: str) -> dict:
    return json.loads((ROOT / run / "eval" / f"{suite}.json").read_text())["summary"]["model"]


def subnet_log(runs: dict[str, str]) -> list[str]:
    """Per-epoch means of the EWS runs: how weak the controller's subnets are and how far the full
    network is from them."""
    if not runs:
        return []
    lines = ["", "## EWS per epoch", "",
             "Means over each epoch (`metrics.jsonl`): the full network's accuracy on its training batches, the",
             "accuracy of the controller's subnet on the batch it was sampled for (minus the REINFORCE reward),",
             "the KL from the full network to the subnet that the loss adds (times λ_KL), and test accuracy.", "",
             "| run | epoch | train acc. | subnet acc. on its batch | KL(full ‖ subnet) | test acc. |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, run in runs.items():
        for line in (ROOT / run / "metrics.jsonl").read_text().splitlines():
            m = json.loads(line)
            lines.append(f"| {name} | {m['epoch'] + 1} | {100 * m['train_acc']:.2f} | {-100 * m['controller_reward']:.2f} | "
                         f"{m['subnet_kl']:.4f} | {100 * m['test_acc']:.2f} |")
    return lines


def main() -> None:
    train = "--no-train" not in sys.argv[1:]
    corruption = train_evaluate_report(CORRUPTION_RUNS, "corruptions", ROOT / "docs/results/ews-corruption", train)
    adversarial = train_evaluate_report(ADVERSARIAL_RUNS, "quick", ROOT / "docs/results/ews-adversarial", train)
    lines = ["# EWS at CPU size on CIFAR-10", "",
             "Produced by `python scripts/ews.py` (from the project root, in the project's virtualenv), which runs",
             "", *commands(CORRUPTION_RUNS, corruption, "corruptions", ROOT / "docs/results/ews-corruption"),
             *commands(ADVERSARIAL_RUNS, adversarial, "quick", ROOT / "docs/results/ews-adversarial"), "",
             "Setting: ResNet-20 on a fixed random 20,000 CIFAR-10 training images of `../shared/data/cifar10-jpeg`,",
             "3 epochs, one-cycle SGD; see the configs. Corruption error: the unnormalised mean over 15 corruptions",
             "x 5 severities on a fixed 2,000 test images; clean accuracy on all 10,000; PGD-20 (eps 8/255, step",
             "2/255) on a fixed 1,000.", provenance(), "",
             "| run | clean acc. | mean corruption error | PGD-20 |", "|---|---:|---:|---:|"]
    for name, run in corruption.items():
        s = summary(run, "corruptions")
        lines.append(f"| {name} | {100 * s['clean_accuracy']:.2f} | {100 * s['mean_corruption_error']:.2f} | – |")
    for name, run in adversarial.items():
        s = summary(run, "quick")
        lines.append(f"| {name} | {100 * s['clean_accuracy']:.2f} | – | {100 * s['attack_accuracy']['pgd20']:.2f} |")
    lines += cost_table({**corruption, **adversarial})
    lines += subnet_log({name: run for name, run in {**corruption, **adversarial}.items() if name.endswith("_ews")})
    lines += ["", "## Reading", ""]
    if {"augmix", "augmix_ews"} <= set(corruption):
        a, e = summary(corruption["augmix"], "corruptions"), summary(corruption["augmix_ews"], "corruptions")
        lines.append(f"- EWS on top of AugMix: clean accuracy {100 * (e['clean_accuracy'] - a['clean_accuracy']):+.2f} "
                     f"points, mean corruption error {100 * (e['mean_corruption_error'] - a['mean_corruption_error']):+.2f}"
                     " points.")
    if {"pgd_at", "pgd_at_ews"} <= set(adversarial):
        a, e = summary(adversarial["pgd_at"], "quick"), summary(adversarial["pgd_at_ews"], "quick")
        lines.append(f"- EWS on top of PGD-AT: clean accuracy {100 * (e['clean_accuracy'] - a['clean_accuracy']):+.2f} "
                     f"points, PGD-20 accuracy {100 * (e['attack_accuracy']['pgd20'] - a['attack_accuracy']['pgd20']):+.2f}"
                     " points (standard error of PGD-20 on 1,000 images: about 1.4 points).")
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
