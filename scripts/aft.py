"""Adversarial fine-tuning (Jeddi et al.) against PGD-AT from scratch on a budget curve, over 3 seeds,
and a long PGD-AT run for robust overfitting; write docs/results/aft.md and docs/results/aft.json.

    python scripts/aft.py            # from the project root, in the project's venv (about 4.5 h here)
    python scripts/aft.py --no-train # only render the runs that have finished
    python scripts/aft.py --tiny     # every stage on 256 images, 2 seeds (no page)

Every arm is the small CNN on all 50,000 CIFAR-10 training images, trained with seeds 0, 1, 2 into
runs/aft/<arm>-s<seed> (two runs at a time, one torch thread each; the fine-tuning runs start from
the standard run of their seed); the long PGD-AT run has seed 0 only. Clean and PGD-20 accuracy are
each run's own final evaluation on all 10,000 test images. Finished runs are not repeated and stopped
ones are resumed.
"""

from __future__ import annotations

import math

from robustrain.config import from_dict, load_yaml
from robustrain.plots import plot_learning_rates
from robustrain.results import RunResults
from robustrain.runs import RunFolder
from robustrain.train import RunConfig, learning_rate_curve
from robustrain.study import PROJECT, Arm, read_metrics, Study

DOC, SOURCE = PROJECT / "docs/results/aft.md", PROJECT / "docs/results/aft.json"
PLOT = PROJECT / "docs/results/aft_schedules.png"
STANDARD, PGD_AT = "configs/cpu/standard_cifar10.yaml", "configs/cpu/pgd_at_cifar10.yaml"
SSFD, STEP = "configs/cpu/aft_ssfd_cifar10.yaml", "configs/cpu/aft_step_cifar10.yaml"
LONG_EPOCHS = 20
STUDY = Study(
    name="aft",
    arms={
        # 11 standard epochs + 1 PGD-10 epoch (11 passes) = 22 passes per image = 2 PGD-AT epochs.
        "pretrain": Arm("standard training, 11 epochs (the starting point)", STANDARD, ("epochs=11",)),
        "aft-ssfd": Arm("AFT, slow start fast decay, 1 epoch", SSFD, starts_from="pretrain"),
        "aft-step": Arm("AFT, step schedule, 1 epoch", STEP, starts_from="pretrain"),
        "pgd-at-1": Arm("PGD-AT from scratch, 1 epoch", PGD_AT, ("epochs=1",)),
        "pgd-at-2": Arm("PGD-AT from scratch, 2 epochs", PGD_AT, ("epochs=2",)),
        "pgd-at-5": Arm("PGD-AT from scratch, 5 epochs", PGD_AT),
        # Rice et al. 2020's schedule shape (lr ÷10 at 1/2 and 3/4 of training), PGD-20 after every epoch.
        "pgd-at-long": Arm(f"PGD-AT from scratch, {LONG_EPOCHS} epochs, step schedule", PGD_AT,
                           (f"epochs={LONG_EPOCHS}", "schedule.name=multistep",
                            f"schedule.milestones=[{LONG_EPOCHS // 2},{3 * LONG_EPOCHS // 4}]", "schedule.gamma=0.1",
                            "eval.epoch_pgd_limit=1000"), seeds=(0,)),
    },
    # (arm, baseline): AFT against PGD-AT at equal total passes (pretraining counted), at equal added
    # passes (the pretrained model taken as given) and at 2.5x its total; the two fine-tuning schedules.
    comparisons=(("aft-ssfd", "pgd-at-2"), ("aft-ssfd", "pgd-at-1"), ("aft-ssfd", "pgd-at-5"),
                 ("aft-ssfd", "aft-step")),
    tiny=("data.train_limit=256", "eval.pgd_limit=50", "eval.epoch_pgd_limit=50"),
    suite=None,
    metrics=("clean_acc", "pgd_acc"),
)


def record(run: str, results: RunResults, summary: dict) -> dict:
    """Besides the study's measurements: where measured, the per-epoch test and PGD-20 accuracy (the
    robust-overfitting curve)."""
    metrics = read_metrics(run)
    if "test_pgd_acc" not in metrics[-1]:
        return {}
    return {"test_acc_per_epoch": [m["test_acc"] for m in metrics],
            "test_pgd_acc_per_epoch": [m["test_pgd_acc"] for m in metrics]}


def render(study: dict) -> str:
    lines = [
        "# Adversarial fine-tuning (Jeddi et al.) at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/aft.py` (from the project root, in the project's virtualenv; the numbers",
        "are also in `docs/results/aft.json`). For each arm and seed S in 0, 1, 2 it runs",
        "",
        *STUDY.commands(),
        "",
        "**Question.** Does fine-tuning a standard model adversarially with the slow-start-fast-decay schedule",
        "reach the robustness of PGD-AT from scratch at less compute, and does the schedule matter?",
        "",
        "**Design.** Small CNN (width 16, 72k parameters), all 50,000 CIFAR-10 training images (crop + flip),",
        "SGD with Nesterov momentum, batch 128. AFT fine-tunes an 11-epoch standard model (one-cycle, peak lr",
        "0.1) with PGD-10 AT (eps 8/255, step 2/255, random start) for one epoch at peak lr 0.05, either",
        "rising linearly over 70% of the steps and falling over the last 30% (slow start, fast decay) or",
        "constant with ÷10 at 50% and 75% (step). Budgets in forward+backward passes per training image,",
        "pretraining included: AFT 11 + 11 = 22, the same as PGD-AT for 2 epochs (one-cycle); PGD-AT for 1",
        "epoch costs what AFT adds to a model one already has (11), and for 5 epochs 2.5 times AFT's total",
        "(55). Three seeds per arm. Clean and PGD-20 accuracy (L-inf, eps 8/255, step 2/255, one random",
        "start) on all 10,000 test images.",
        "",
        study["provenance"],
        "",
        *STUDY.tables(study),
        "",
        "Accuracies in %.",
        "",
        "![learning-rate curves of the two fine-tuning runs](aft_schedules.png)",
        *reading(study),
        *overfitting(study),
    ]
    return "\n".join(lines) + "\n"


def reading(study: dict) -> list[str]:
    """The paper's claim (AFT as robust as PGD-AT at a fraction of its cost) against the comparisons' verdicts."""
    return STUDY.reading(study, {
        ("aft-ssfd", "pgd-at-2"): "AFT (slow start, fast decay) − PGD-AT at the same total passes (22 per image)",
        ("aft-ssfd", "pgd-at-1"): "AFT (slow start, fast decay) − PGD-AT at the same added passes (11 per image, the "
                                  "standard model given)",
        ("aft-ssfd", "pgd-at-5"): "AFT (slow start, fast decay) − PGD-AT at 2.5 times AFT's total passes (55 per "
                                  "image)",
        ("aft-ssfd", "aft-step"): "The slow-start-fast-decay schedule − the step schedule (same cost)",
    }, ["- Limits: a 72k-parameter network and budgets of 11-55 passes per image; the paper's claim",
        "  (equal or better robustness than PGD-AT at 8-10x less compute) is made for ResNets and WRNs",
        "  trained for tens of epochs; `configs/paper/aft_cifar10_resnet18.yaml` is that recipe, for a GPU."])


def overfitting(study: dict) -> list[str]:
    """The long PGD-AT run's per-epoch PGD-20 accuracy: the best epoch against the last one."""
    runs = study["arms"].get("pgd-at-long", {})
    heading = ["", f"## Robust overfitting: PGD-AT for {LONG_EPOCHS} epochs", ""]
    if not runs:
        return [*heading, f"Not finished yet: the {LONG_EPOCHS}-epoch PGD-AT run takes about 2 h of one core here; "
                "`python scripts/aft.py` resumes it and rewrites this page."]
    images = RunFolder(PROJECT / runs[min(runs)]["run"]).config_mapping()["eval"]["epoch_pgd_limit"]
    curve = runs[min(runs)]["test_pgd_acc_per_epoch"]
    best = max(range(len(curve)), key=curve.__getitem__)
    drop = curve[best] - curve[-1]
    # Two standard errors of the difference of two independent accuracies on `images` images: an upper
    # bound for two epochs measured on the same images.
    band = 2 * math.sqrt(sum(a * (1 - a) / images for a in (curve[best], curve[-1])))
    lines = [*heading,
             f"PGD-AT from scratch for {LONG_EPOCHS} epochs, lr 0.1 ÷10 at epochs {LONG_EPOCHS // 2} and "
             f"{3 * LONG_EPOCHS // 4} (the shape of Rice et al. 2020's schedule),",
             f"PGD-20 after every epoch on a fixed random {images:,} test images, seed 0 only.", "",
             "| epoch | " + " | ".join(str(e + 1) for e in range(len(curve))) + " |",
             "|---|" + "---:|" * len(curve)]
    for seed, r in runs.items():
        lines.append(f"| PGD-20 acc, seed {seed} | " + " | ".join(f"{100 * a:.1f}" for a in r["test_pgd_acc_per_epoch"])
                     + " |")
        lines.append(f"| clean acc, seed {seed} | " + " | ".join(f"{100 * a:.1f}" for a in r["test_acc_per_epoch"])
                     + " |")
    lines += ["", f"The best epoch is {best + 1} ({100 * curve[best]:.1f}%), the last ends at {100 * curve[-1]:.1f}%: "
              + (f"{100 * drop:.1f} points lower, beyond two standard errors of the difference "
                 f"({100 * band:.1f}): robust overfitting at this scale (the best epoch is picked on the same "
                 "images, which favours it somewhat)." if drop > band else
                 f"{100 * drop:.1f} points lower, within two standard errors of the difference ({100 * band:.1f}): "
                 "no robust overfitting shows at this scale (Rice et al. see it in PreAct-ResNet-18 and WRN-34-10 "
                 "after the first decay of a 200-epoch schedule).")]
    return lines


def plot_schedules() -> None:
    curves = {label: learning_rate_curve(from_dict(RunConfig, load_yaml(PROJECT / config)))
              for label, config in (("slow start, fast decay", SSFD), ("step", STEP))}
    plot_learning_rates(curves, "fine-tuning learning rate (1 epoch = 390 steps)", PLOT)


if __name__ == "__main__":
    plot_schedules()
    STUDY.main(record, render, DOC, SOURCE)
