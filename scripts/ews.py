"""EWS at CPU size with a controller that has enough updates to act, against AugMix at equal epochs
and at equal cost and against the same distillation into random subnets, over 3 seeds; write
docs/results/ews.md and docs/results/ews.json.

    python scripts/ews.py            # from the project root, in the project's venv (about 12 h here)
    python scripts/ews.py --no-train # only render the runs and evaluations that have finished
    python scripts/ews.py --tiny     # every stage on 512 images, 2 epochs, 2 seeds, suite quick (no page)

Every arm is a ResNet-20 on a fixed random 20,000 CIFAR-10 training images (configs/cpu/ews_*_resnet20.yaml),
trained with seeds 0, 1, 2 into runs/ews/<arm>-s<seed> (two runs at a time, one torch thread each) and
evaluated with the corruptions suite; finished runs and evaluations are not repeated and stopped ones
are resumed. The controller's settings must first pass scripts/ews_controller.py (its subnets weaker
than random ones of the same width); otherwise this study measures distillation into random subnets
twice and cannot answer its question.
"""

from __future__ import annotations

import statistics
from robustrain.study import PROJECT, Arm, read_metrics, Study


DOC, SOURCE = PROJECT / "docs/results/ews.md", PROJECT / "docs/results/ews.json"
AUGMIX, EWS = "configs/cpu/ews_augmix_resnet20.yaml", "configs/cpu/ews_augmix_ews_resnet20.yaml"
# One controller update per step at 10 times the official learning rate, for 10 epochs (10 x 156 steps =
# 1,560 updates): docs/results/ews-controller.md finds the controller's subnets weaker than random ones
# on a frozen network at this setting after 1,500 updates, not after 470 (3 epochs).
EPOCHS = 10
CONTROLLER = ("method.controller_interval=1", "method.controller_lr=0.003")
STUDY = Study(
    name="ews",
    arms={
        "standard": Arm("standard training", "configs/cpu/ews_standard_resnet20.yaml", (f"epochs={EPOCHS}",)),
        "augmix": Arm("AugMix", AUGMIX, (f"epochs={EPOCHS}",)),
        "augmix-equal-cost": Arm(f"AugMix, {2 * EPOCHS} epochs (EWS + AugMix's passes)", AUGMIX,
                                 (f"epochs={2 * EPOCHS}",)),
        "ews": Arm("EWS + AugMix", EWS, (f"epochs={EPOCHS}", *CONTROLLER)),
        "random-subnets": Arm("AugMix + the same distillation into random subnets", EWS,
                              (f"epochs={EPOCHS}", "method.subnets=random")),
    },
    # (arm, baseline): EWS against its base at equal epochs and at equal cost, the search against
    # random subnets, and the distillation alone against its base.
    comparisons=(("ews", "augmix"), ("ews", "augmix-equal-cost"), ("ews", "random-subnets"),
                 ("random-subnets", "augmix"), ("augmix", "standard")),
    tiny=("data.train_limit=512", "epochs=2", "eval.pgd_limit=50"),
)


def record(run: str, results: dict, summary: dict) -> dict:
    """Besides the study's metrics: the last epoch's training accuracy and, for EWS, the accuracy of the
    controller's subnets on the same batches (the mechanism: are they weaker than the full network?)."""
    last = read_metrics(run)[-1]
    kept = {"train_acc_last_epoch": last["train_acc"]}
    if "controller_reward" in last:
        kept["subnet_acc_last_epoch"] = -last["controller_reward"]
    if "subnet_kl" in last:
        kept["subnet_kl_last_epoch"] = last["subnet_kl"]
    return kept


def render(study: dict) -> str:
    lines = [
        "# EWS at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/ews.py` (from the project root, in the project's virtualenv; the numbers",
        "are also in `docs/results/ews.json`). For each arm and seed S in 0, 1, 2 it runs",
        "",
        *STUDY.commands(),
        "",
        "**Question.** Does distilling the full network into the weak subnets a controller finds make AugMix",
        "more robust to corruptions, beyond what AugMix gets from the same compute, and beyond distilling",
        "into random subnets?",
        "",
        f"**Design.** ResNet-20 on a fixed random 20,000 CIFAR-10 training images, {EPOCHS} epochs of",
        "one-cycle SGD, AugMix with JSD (the configs). The controller is updated every step at lr 3e-3",
        f"({EPOCHS * 156:,} updates): `ews-controller.md` finds its subnets weaker than random ones on a frozen",
        "network at this setting after 1,500 updates, not after 470; the first design (`ews-first-design.md`)",
        "gave it 47 updates at 3e-4, after which its subnets were no weaker than random ones. EWS + AugMix costs 6",
        f"forward+backward passes per image against AugMix's 3, so AugMix also runs {2 * EPOCHS} epochs; the",
        "random-subnet control is the same distillation with uniformly random masks of the same width.",
        "Three seeds per arm. The adversarial side of the earlier page (PGD-AT ± EWS) is not part of this",
        "design. The whole study takes about 12 h of this 2-core CPU (two runs at a time, one core each), so",
        "it is finished over several sessions; arms not run yet are marked so. Training time per run on the",
        f"CPU, one core each (mean): {STUDY.training_minutes(study)}.",
        "",
        study["provenance"],
        "",
        *STUDY.tables(study),
        "",
        "Accuracies and errors in %. Clean accuracy on all 10,000 test images; corruption error: the",
        "unnormalised mean over the 15 benchmark corruptions x 5 severities on a fixed 2,000 test images.",
        *reading(study),
    ]
    ews = study["arms"].get("ews", {})
    if ews:
        full = statistics.fmean(r["train_acc_last_epoch"] for r in ews.values())
        subnet = statistics.fmean(r["subnet_acc_last_epoch"] for r in ews.values())
        lines += ["", f"Mechanism: in the last epoch the controller's subnets reached {100 * subnet:.2f}% on the clean "
                  f"training batches against the full network's {100 * full:.2f}% (training accuracy over all the "
                  "views), mean over the seeds."]
    return "\n".join(lines) + "\n"


def reading(study: dict) -> list[str]:
    """The paper's claim (EWS lowers AugMix's corruption error) against the comparisons' verdicts."""
    return STUDY.reading(study, {
        ("ews", "augmix"): "EWS + AugMix − AugMix (same epochs)",
        ("ews", "augmix-equal-cost"): "EWS + AugMix − AugMix (same passes)",
        ("ews", "random-subnets"): "EWS + AugMix − the same distillation into random subnets",
        ("random-subnets", "augmix"): "Distillation into random subnets − AugMix (same epochs)",
        ("augmix", "standard"): "AugMix − standard training (same epochs)",
    }, ["- Limits: ResNet-20, 20,000 images and 10 epochs; the official CIFAR recipe trains a ResNet-50",
        "  for 400 epochs on all of CIFAR-10 (methods-spec, EWS (c))."])


if __name__ == "__main__":
    STUDY.main(record, render, DOC, SOURCE)
