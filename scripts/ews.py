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
twice and cannot answer its question. The page checks the same in every trained EWS model (`check_run`:
its controller's subnets against random ones, per seed) in its section "Does the search act?", and
compares there the distillation's KL divergence during training with the random-subnet control's.
"""

from __future__ import annotations

import dataclasses
import statistics

from robustrain.methods.ews import check_run
from robustrain.study import (PROJECT, Arm, PairedDifference, comparison_key, count_of, mean_sd, provisional,
                              read_metrics, stated, Study)


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
        "random-subnets": Arm("random-subnet control (AugMix, distilled into random subnets)", EWS,
                              (f"epochs={EPOCHS}", "method.subnets=random")),
    },
    # (arm, baseline): EWS against its base at equal epochs and at equal cost, the search against
    # random subnets, and the distillation alone against its base.
    comparisons=(("ews", "augmix"), ("ews", "augmix-equal-cost"), ("ews", "random-subnets"),
                 ("random-subnets", "augmix"), ("augmix", "standard")),
    tiny=("data.train_limit=512", "epochs=2", "eval.pgd_limit=50"),
)


# The runs trained before runs recorded their torch threads had one each (two runs at a time, one core
# each), except these, which had two (the sessions' logs say so), for the part of them named.
UNRECORDED_TWO_THREADS = {
    "runs/ews/augmix-equal-cost-s2": "the third seed of AugMix for 20 epochs (all of it, 43 min: the last run "
                                     "of a session, trained alone)",
    "runs/ews/ews-s0": "the first seed of EWS + AugMix (its first 2 of 10 epochs, at the end of a session)",
}


def record(run: str, results: dict, summary: dict) -> dict:
    """Besides the study's metrics: the last epoch's training accuracy; for EWS and the random-subnet
    control, the distillation's KL divergence per epoch; for EWS, the reward's subnet accuracy in the
    last epoch and the mechanism check of the trained model (`check_run` with its defaults:
    subnets sampled from its controller against as many uniformly random ones of the same widths, and
    the full network, on fixed test images with batch statistics, as the controller's reward measures it;
    and the share of kept channels two subnets of each kind have in common)."""
    metrics = read_metrics(run)
    last = metrics[-1]
    kept = {"train_acc_last_epoch": last["train_acc"]}
    if "controller_reward" in last:
        kept["subnet_acc_last_epoch"] = -last["controller_reward"]
        kept["subnet_check"] = dataclasses.asdict(check_run(PROJECT / run))
    if "subnet_kl" in last:
        kept["subnet_kl_per_epoch"] = [m["subnet_kl"] for m in metrics]
    return kept


def unrecorded_threads(study: dict) -> str:
    """What the page says of the threads of its runs that did not record them in every process ("" when
    all did)."""
    unrecorded = {r["run"] for seeds in study["arms"].values() for r in seeds.values()
                  if None in r.get("threads", [None])}
    if not unrecorded:
        return ""
    two = [what for run, what in UNRECORDED_TWO_THREADS.items() if run in unrecorded]
    return (" The runs that did not record their threads had one thread, on one core, each"
            + (f", except {' and '.join(two)}, which had two" if two else "") + ".")


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
        f"CPU (mean, apart by the torch threads the runs had): {STUDY.training_minutes(study)}."
        + unrecorded_threads(study),
        "",
        study["provenance"],
        "",
        *STUDY.tables(study),
        "",
        "Accuracies and errors in %. Clean accuracy on all 10,000 test images; corruption error: the",
        "unnormalised mean over the 15 benchmark corruptions x 5 severities on a fixed 2,000 test images.",
        *reading(study),
        *mechanism(study),
        *verdict(study),
    ]
    return "\n".join(lines) + "\n"


ACTS = {"below": "weaker than random ones beyond the noise: the search acts",
        "above": "stronger than random ones beyond the noise: the search does not act as EWS means it to",
        "within the noise": "not weaker than random ones beyond the noise: the search is not shown to act"}


FARTHER = {"above": "EWS distils into subnets farther from the full network than random ones beyond the noise: the "
                     "search acts during training",
           "below": "EWS distils into subnets nearer the full network than random ones beyond the noise: the search "
                    "does not act as EWS means it to",
           "within the noise": "EWS's subnets are not farther from the full network than random ones beyond the "
                               "noise: the search is not shown to act during training"}


def mechanism(study: dict) -> list[str]:
    """Does the search act? A paragraph each for the end of training and for training itself (once a
    seed has both an EWS run and a random-subnet run), and what the two hold fixed; nothing until an EWS
    run has finished."""
    end, during = at_the_end(study), during_training(study)
    if not (end or during):
        return []
    return ["", "## Does the search act?", *(["", end] if end else []), *(["", during] if during else []),
            *(["", "The two readings hold different things fixed. The one at the end tests one network's subnets, "
                   "but cannot tell a search that never acted from one whose weak subnets the distillation has "
                   "since strengthened; the one during training sees what the distillation worked on, but in two "
                   "networks (the same seed and data, each trained with its own subnets)."] if end and during
              else [])]


def during_training(study: dict) -> str:
    """Did EWS distil into subnets farther from the full network than random subnets are, while it
    trained: per seed, the distillation's KL divergence averaged over the epochs, EWS against the
    random-subnet control of the same seed (95% t interval over the seeds); "" before a seed has both."""
    def kl(arm: str) -> dict[str, float]:
        return {seed: statistics.fmean(r["subnet_kl_per_epoch"]) for seed, r in study["arms"].get(arm, {}).items()
                if "subnet_kl_per_epoch" in r}

    searched, drawn = kl("ews"), kl("random-subnets")
    seeds = sorted(searched.keys() & drawn.keys())
    if not seeds:
        return ""
    difference = PairedDifference(tuple(searched[s] - drawn[s] for s in seeds))
    return ("During training, the distillation's KL divergence from the full network to the subnet it distils "
            "into (in nats, as training logs it: on each image and its two AugMix views; the mean of each "
            f"run's per-epoch means) is {mean_sd([searched[s] for s in seeds], scale=1, digits=4)} for "
            f"EWS + AugMix against {mean_sd([drawn[s] for s in seeds], scale=1, digits=4)} for the same "
            f"distillation into random subnets (mean ± sd over {count_of(len(seeds), 'seed')}, paired by seed)."
            + over_seeds(len(seeds), f"EWS − random: {difference.mean:+.4f} ± {difference.half_width:.4f} "
                                     f"({difference.verdict}); {FARTHER[difference.verdict]}"))


def over_seeds(seeds: int, verdict: str) -> str:
    """A mechanism reading's verdict sentence over `seeds` seeds: none before a second seed gives an
    interval, marked provisional before the study's last seed."""
    if seeds < 2:
        return " One seed so far: no interval yet."
    return f" {verdict}." + (f" Provisional: {seeds} of {len(STUDY.seeds)} seeds." if seeds < len(STUDY.seeds) else "")


def at_the_end(study: dict) -> str:
    """Are the trained EWS models' controllers' subnets weaker than random subnets of the same widths
    (per seed, the mean over the subnets of each kind; 95% t interval over the seeds); "" before an EWS
    run has finished."""
    checks = {seed: r["subnet_check"] for seed, r in study["arms"].get("ews", {}).items() if "subnet_check" in r}
    if not checks:
        return ""
    found = [statistics.fmean(c["controller_subnet_acc"]) for c in checks.values()]
    drawn = [statistics.fmean(c["random_subnet_acc"]) for c in checks.values()]
    difference = PairedDifference(tuple(f - d for f, d in zip(found, drawn))).summary()
    judged = over_seeds(len(checks), f"Controller − random: {stated(difference)}; the controller's subnets are "
                                     f"{ACTS[difference['verdict']]}")
    first = next(iter(checks.values()))
    images, subnets = first["images"], len(first["controller_subnet_acc"])
    return (f"At the end of training, on a fixed {images} test images with batch statistics (as the controller's "
            f"reward measures it), {subnets} subnets sampled from each EWS run's controller reach {mean_sd(found)}% "
            f"against {mean_sd(drawn)}% for {subnets} uniformly random subnets of the same widths, and the full "
            f"network {mean_sd([c['full_acc'] for c in checks.values()])}% (mean ± sd over "
            f"{count_of(len(checks), 'seed')})." + judged + narrowness(list(checks.values())))


NARROWER = {"above": "the controller has narrowed its choice beyond the noise, so its run's distillation trained on a "
                     "narrower set of subnets than the random-subnet control's",
            "below": "the controller spreads its choice wider than random subnets do, beyond the noise",
            "within the noise": "the controller's choice is not narrower than random beyond the noise"}


def narrowness(checks: list[dict]) -> str:
    """How alike the subnets of a trained controller are (`shared_channels`) against random ones; "" for
    records from before the check measured it."""
    if not all("controller_shared" in c for c in checks):
        return ""
    found, drawn = [c["controller_shared"] for c in checks], [c["random_shared"] for c in checks]
    difference = PairedDifference(tuple(f - d for f, d in zip(found, drawn))).summary()
    compared = f"; controller − random: {stated(difference)}: {NARROWER[difference['verdict']]}."
    return (f" Two of those subnets from one controller keep {mean_sd(found)}% of the same channels, two random "
            f"ones {mean_sd(drawn)}%" + (compared if len(checks) > 1 else "."))


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


SEARCH = {"below": "choosing the subnets lowers the error beyond what the distillation does alone",
          "above": "the controller's subnets raise the error against random ones, beyond the noise",
          "within the noise": "the controller's choice of subnets makes no difference beyond the noise"}


def verdict(study: dict) -> list[str]:
    """The paper's claim (EWS lowers AugMix's corruption error) judged on the three comparisons that
    decide it, and what was checked; nothing until all three have run."""
    keys = [comparison_key("ews", baseline) for baseline in ("augmix", "augmix-equal-cost", "random-subnets")]
    if not all(key in study["comparisons"] for key in keys):
        return []
    same_epochs, same_passes, random = (study["comparisons"][key]["corruption_error"] for key in keys)
    return ["", "## Verdict", "",
            "The paper's claim, that EWS lowers AugMix's corruption error, "
            + ("holds" if same_epochs["verdict"] == "below" else "does not hold") + " at this scale: EWS + AugMix's "
            f"corruption error is {stated(same_epochs)} against AugMix for the same epochs (the paper's comparison), "
            f"{stated(same_passes)} against AugMix given EWS + AugMix's passes, and {stated(random)} against the "
            f"same distillation into random subnets: {SEARCH[random['verdict']]}." + provisional(study, *keys),
            "",
            "What was checked: the masked blocks (a masked block equals the block with those input channels zeroed), "
            "the loss (the base loss plus the weighted KL to the subnet), the controller (it learns to pick the "
            "weakest of planted subnets) and the random-subnet control's keep probability (`tests/test_ews.py`); "
            "the controller alone on a frozen network (`ews-controller.md`); equal passes per image (the budget "
            "column); whether the search acts, at the end of training and during it (above)."]


if __name__ == "__main__":
    STUDY.main(record, render, DOC, SOURCE)
