"""OAT against dedicated models with the same data per λ, on ResNet-20 with Λ = {0, 1}, over 3 seeds;
write docs/results/oat.md and docs/results/oat.json.

    python scripts/oat.py            # from the project root, in the project's venv (about 5.5 h here)
    python scripts/oat.py --no-train # only render the runs that have finished
    python scripts/oat.py --tiny     # every stage on 256 images, 2 epochs, 2 seeds (no page)

Every arm is a ResNet-20 on a fixed random 10,000 CIFAR-10 training images (configs/cpu/oat_resnet20.yaml,
configs/cpu/pgd_at_lambda_resnet20.yaml), trained with seeds 0, 1, 2 into runs/oat/<arm>-s<seed> (two
runs at a time, one torch thread each). Clean accuracy (all 10,000 test images) and PGD-20 accuracy (a
fixed random 1,000) are each run's own final evaluation, per λ for OAT. Finished runs are not repeated
and stopped ones are resumed.
"""

from __future__ import annotations

from robustrain.results import RunResults
from robustrain.study import LABELS, PROJECT, Arm, comparison_key, provisional, read_metrics, stated, Study

DOC, SOURCE = PROJECT / "docs/results/oat.md", PROJECT / "docs/results/oat.json"
OAT, DEDICATED = "configs/cpu/oat_resnet20.yaml", "configs/cpu/pgd_at_lambda_resnet20.yaml"
STUDY = Study(
    name="oat",
    arms={
        "standard": Arm("dedicated λ = 0 (standard training), 6 epochs", DEDICATED, ("method.adv_weight=0",)),
        "pgd-at": Arm("dedicated λ = 1 (PGD-AT), 6 epochs", DEDICATED),
        "oat": Arm("OAT, 12 epochs", OAT),
        "oat-same-epochs": Arm("OAT, 6 epochs", OAT, ("epochs=6",)),
        "oat-residual": Arm("OAT with FiLM as 1 + Δ, 12 epochs", OAT, ("model.film_residual=true",)),
    },
    # (arm, baseline): the mechanism (does λ move one model along the trade-off?); OAT at each λ against
    # its dedicated model with the same data per λ (12 epochs, half of each batch per λ) and with the same
    # epochs (the paper's comparison); the FiLM initialisation, and OAT with FiLM as 1 + Δ against the
    # dedicated models.
    comparisons=(("oat@lambda=0", "oat@lambda=1"), ("oat@lambda=0", "standard"), ("oat@lambda=1", "pgd-at"),
                 ("oat-same-epochs@lambda=0", "standard"), ("oat-same-epochs@lambda=1", "pgd-at"),
                 ("oat-residual@lambda=0", "oat@lambda=0"), ("oat-residual@lambda=1", "oat@lambda=1"),
                 ("oat-residual@lambda=0", "standard"), ("oat-residual@lambda=1", "pgd-at")),
    tiny=("data.train_limit=256", "epochs=2", "eval.pgd_limit=50"),
    suite=None,
    metrics=("clean_acc", "pgd_acc"),
)


def record(run: str, results: RunResults, summary: dict) -> dict:
    """Besides the study's measurements: the per-epoch test accuracy (per λ for OAT)."""
    return {"test_acc_per_epoch": [m["test_acc"] for m in read_metrics(run)]}


def render(study: dict) -> str:
    lines = [
        "# OAT at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/oat.py` (from the project root, in the project's virtualenv; the numbers",
        "are also in `docs/results/oat.json`). For each arm and seed S in 0, 1, 2 it runs",
        "",
        *STUDY.commands(),
        "",
        "**Question.** Does one OAT model, conditioned on λ, match at each λ the model trained for that λ",
        "alone (Wang et al. 2020: \"OAT matches or beats dedicated PGD-AT(λ) models\")?",
        "",
        "**Design.** ResNet-20 (residual blocks, as the paper's ResNet-34 and WRN-16-8) on a fixed random",
        "10,000 CIFAR-10 training images (crop + flip), SGD with Nesterov momentum, one-cycle lr peaking at",
        "0.1, batch 128. OAT: Λ = {0, 1}, random orthogonal 128-d codes, FiLM after every BN, dual BN, half of",
        "each batch at λ = 0 (the official 1/|Λ|), PGD-7 (eps 8/255, step 10/255/7, random start, BN in eval",
        "mode) on the other half. Dedicated models: plain ResNet-20s on (1 − λ) CE(clean) + λ CE(PGD-7) with",
        "the same attack, 6 epochs. OAT for 12 epochs gives each λ the images its dedicated model sees (and",
        "costs about what the two dedicated models cost together); OAT for 6 epochs is the paper's comparison",
        "(the same epochs), where each λ sees half. The first design (`oat-first-design.md`) trained a",
        "72k-parameter CNN without skip connections with 6 values of λ for 5 epochs: each λ got about a sixth",
        "of its dedicated model's data.",
        "`oat-residual` starts FiLM's scale at 1 (1 + Δ) instead of the official Δ near 0. Three seeds per",
        "arm. Clean accuracy on all 10,000 test images; PGD-20 (L-inf, eps 8/255, step 2/255, one random",
        "start) on a fixed random 1,000. The whole study takes about 11 core-hours of this CPU, 5.5 h at two",
        "runs at a time (one core each; OAT trains at about 36 images/s on one core, 5 minutes an epoch, since",
        "commit 98f8752 computed dual BN's routes in one pass, 24 before it; PGD-AT at 34), so it is finished",
        "over several sessions; arms not run yet are marked so. (The first OAT run, seed 0 at 12 epochs, trained",
        "its first epoch before that commit and two more at half speed beside another study: its time is high.",
        "The seed-1 runs at 12 and 6 epochs trained their first epochs at less than half that speed beside the",
        "test suite, and were paused for 17 minutes during another of its runs: their times are high too.",
        "The 12-epoch seed-2 run and the first 1 + Δ run trained their second epoch at half speed beside",
        "timing checks.)",
        f"Training time per run on the CPU, one core each (mean): {STUDY.training_minutes(study)}.",
        "",
        study["provenance"],
        "",
        *STUDY.tables(study),
        "",
        "Accuracies in %.",
        *reading(study),
        "",
        "OATS (the slimmable OAT over widths, `configs/cpu/oats_cifar10.yaml`) is not part of this study.",
    ]
    return "\n".join(lines) + "\n"


def at_each_lambda(comparisons: dict, keys: list[str]) -> str:
    """The comparisons `keys`, at λ = 0 and λ = 1 in that order, in words."""
    return "; ".join(f"at λ = {lam} {stated(comparisons[key]['clean_acc'])} in clean and "
                     f"{stated(comparisons[key]['pgd_acc'])} in PGD-20 accuracy" for lam, key in enumerate(keys))


def against_dedicated(comparisons: dict, keys: list[str]) -> str:
    """The claim's verdict for the comparisons `keys` (λ = 0 and λ = 1 against their dedicated models),
    naming each metric and λ where OAT is below (and above) beyond the noise."""
    def where(verdict: str) -> str:
        return ", ".join(f"{LABELS[m]} at λ = {lam}" for lam, key in enumerate(keys) for m in ("clean_acc", "pgd_acc")
                         if comparisons[key][m]["verdict"] == verdict)

    below, above = where("below"), where("above")
    if not below:
        return "Nowhere below them beyond the noise: consistent with the claim, to within the intervals above."
    return (f"Below them beyond the noise in {below}" + (f" (above in {above})" if above else "")
            + ": the claim (at least as good at every λ) does not hold here.")


def reading(study: dict) -> list[str]:
    """The mechanism, and whether OAT matches its dedicated models, from the comparisons' verdicts."""
    comparisons = study["comparisons"]
    lines = []
    mechanism = comparison_key("oat@lambda=0", "oat@lambda=1")
    if mechanism in comparisons:
        c = comparisons[mechanism]
        acts = c["clean_acc"]["verdict"] == "above" and c["pgd_acc"]["verdict"] == "below"
        lines.append(f"- Mechanism: the same OAT weights at λ = 0 against λ = 1 are {stated(c['clean_acc'])} in clean "
                     f"and {stated(c['pgd_acc'])} in PGD-20 accuracy: "
                     + ("λ moves the model along the trade-off, beyond the noise." if acts else
                        "λ does not move the model along the trade-off beyond the noise, so the comparisons below "
                        "test a conditioning that barely acts.") + provisional(study, mechanism))
    for arm, what in (("oat", "with the same data per λ"), ("oat-same-epochs", "with the same epochs"),
                      ("oat-residual", "with FiLM as 1 + Δ and the same data per λ")):
        keys = [comparison_key(f"{arm}@lambda=0", "standard"), comparison_key(f"{arm}@lambda=1", "pgd-at")]
        if not all(key in comparisons for key in keys):
            continue
        lines.append(f"- OAT against the dedicated models {what}: " + at_each_lambda(comparisons, keys) + ". "
                     + against_dedicated(comparisons, keys) + provisional(study, *keys))
    residual = [comparison_key(f"oat-residual@lambda={lam}", f"oat@lambda={lam}") for lam in (0, 1)]
    if all(key in comparisons for key in residual):
        lines.append("- FiLM as 1 + Δ against the official initialisation: " + at_each_lambda(comparisons, residual)
                     + "." + provisional(study, *residual))
    return ["", "## Reading", "", *lines] if lines else []


if __name__ == "__main__":
    STUDY.main(record, render, DOC, SOURCE)
