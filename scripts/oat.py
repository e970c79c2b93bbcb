"""Train and evaluate OAT, OATS and the dedicated PGD-AT(λ) models on CIFAR-10 at CPU size, and
write docs/results/oat.md.

    python scripts/oat.py            # from the project root, in the project's venv
    python scripts/oat.py --no-train # only render the runs and evaluations that have finished

Runs go to runs/oat/<name> (the dedicated λ = 0 model is the standard baseline,
runs/baselines/standard, trained with the same data, optimiser and schedule); each is evaluated with
the quick suite, which for OAT and OATS measures every (width, λ) setting. A finished run or
evaluation is not repeated and a stopped one is resumed. The side-by-side report, with the SA-RA
trade-off plot, goes to docs/results/oat-eval/.
"""

from __future__ import annotations

import math
import sys

from robustrain.runs import RunFolder

from common import ROOT, commands, provenance, train_evaluate_report

SUITE = "quick"
DOC = ROOT / "docs/results/oat.md"
REPORT = ROOT / "docs/results/oat-eval"
DEDICATED = {0.0: ("configs/cpu/standard_cifar10.yaml", "runs/baselines/standard", ()),
             0.2: ("configs/cpu/pgd_at_lambda_cifar10.yaml", "runs/oat/pgd_at_lambda0.2",
                   ("--set", "method.adv_weight=0.2")),
             1.0: ("configs/cpu/pgd_at_lambda_cifar10.yaml", "runs/oat/pgd_at_lambda1",
                   ("--set", "method.adv_weight=1.0"))}
RUNS = {"oat": ("configs/cpu/oat_cifar10.yaml", "runs/oat/oat", ()),
        **{f"pgd_at_lambda{lam:g}": spec for lam, spec in DEDICATED.items()},
        "oats": ("configs/cpu/oats_cifar10.yaml", "runs/oat/oats", ()),
        "oat_film_residual": ("configs/cpu/oat_cifar10.yaml", "runs/oat/oat_film_residual",
                              ("--set", "model.film_residual=true"))}


def main() -> None:
    train = "--no-train" not in sys.argv[1:]
    finished = train_evaluate_report(RUNS, SUITE, REPORT, train)
    DOC.write_text(render(finished))
    print(f"wrote {DOC.relative_to(ROOT)}")


def summary(run: str) -> dict:
    return RunFolder(ROOT / run).evaluation(SUITE)["summary"]


def difference_tolerance(a: float, b: float, images: int) -> float:
    """Two standard errors of the difference of two accuracies, each measured on `images` images."""
    return 2 * math.hypot(*(math.sqrt(p * (1 - p) / images) for p in (a, b)))


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def render(finished: dict[str, str]) -> str:
    lines = [
        "# OAT and OATS at CPU size on CIFAR-10",
        "",
        "Produced by `python scripts/oat.py` (from the project root, in the project's virtualenv), which",
        "runs",
        "",
        *commands(RUNS, finished, SUITE, REPORT),
        "",
        "Setting: the small CNN (`small_cnn`, width 16) on all 50,000 training images of",
        "`../shared/data/cifar10-jpeg` (crop + flip), SGD with Nesterov momentum, one-cycle learning rate",
        "peaking at 0.1, batch 128, seed 0; OAT and the dedicated models 5 epochs, OATS 3 epochs.",
        "OAT: λ ∈ Λ = {0, 0.1, 0.2, 0.3, 0.4, 1}, random orthogonal 128-d codes, FiLM after every BN, dual BN,",
        "22 of 128 samples per batch at λ = 0; PGD-7 (eps 8/255, step 10/255/7, random start, BN in eval",
        "mode) on the λ > 0 samples. Dedicated PGD-AT(λ): a plain small CNN trained on",
        "(1 - λ) CE(clean) + λ CE(PGD-7) with the same attack; λ = 0 is the standard baseline",
        "(configs/cpu/standard_cifar10.yaml, the same data, optimiser and schedule).",
        "Evaluation (suite quick): clean accuracy on all 10,000 test images; PGD-20 (L-inf, eps 8/255,",
        "step 2/255, one random start) on a fixed random subset of 1,000 test images (standard error about",
        "1.4 points at 40%); corruption error over 5 corruptions at severity 3 on 1,000 images.",
        provenance(),
        "",
    ]
    if "oat" not in finished:
        return "\n".join(lines + ["The OAT run has not finished yet."]) + "\n"
    oat = summary(finished["oat"])
    lines += ["## OAT against dedicated PGD-AT(λ) models", "",
              "| λ | OAT clean | OAT PGD-20 | dedicated clean | dedicated PGD-20 | Δ clean | Δ PGD-20 |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    comparisons = []
    for key, s in oat.items():
        lam = float(key.split("=")[1])
        row = f"| {lam:g} | {pct(s['clean_accuracy'])} | {pct(s['attack_accuracy']['pgd20'])} |"
        name = f"pgd_at_lambda{lam:g}"
        if name in finished:
            d = summary(finished[name])["model"]
            delta_clean = s["clean_accuracy"] - d["clean_accuracy"]
            delta_robust = s["attack_accuracy"]["pgd20"] - d["attack_accuracy"]["pgd20"]
            comparisons.append((lam, delta_clean, delta_robust, s, d))
            row += (f" {pct(d['clean_accuracy'])} | {pct(d['attack_accuracy']['pgd20'])} | {100 * delta_clean:+.2f} |"
                    f" {100 * delta_robust:+.2f} |")
        else:
            row += " – | – | – | – |"
        lines.append(row)
    ordered = sorted(oat.items(), key=lambda item: float(item[0].split("=")[1]))
    clean = [s["clean_accuracy"] for _, s in ordered]
    robust = [s["attack_accuracy"]["pgd20"] for _, s in ordered]
    monotone = all(a >= b for a, b in zip(clean, clean[1:])) and all(a <= b for a, b in zip(robust, robust[1:]))
    lines += ["", "Accuracies in %; Δ = OAT minus dedicated. Along λ, OAT's clean accuracy "
              + ("falls and its PGD-20 accuracy rises monotonically: one set of weights gives the trade-off."
                 if monotone else "and PGD-20 accuracy do not move monotonically."), "",
              "The SA-RA trade-off plot:", "",
              f"![clean vs robust]({REPORT.name}/clean_vs_robust.png)", ""]
    lines += reading(comparisons, "oat_film_residual" in finished)
    if "oat_film_residual" in finished:
        lines += film_ablation(oat, summary(finished["oat_film_residual"]))
    oats_results = RunFolder(ROOT / RUNS["oats"][1]).results()
    if oats_results is not None:
        # The run's own final evaluation: clean accuracy on all test images and PGD-20 on the same
        # fixed 1,000 as the quick suite, with the same seeds, per (width, λ).
        oats = oats_results.measurements
        widths = sorted({key.split(",")[0] for key in oats}, key=lambda w: float(w.split("=")[1]))
        lambdas = [key.split(",")[1] for key in oats if key.startswith(widths[0] + ",")]
        lines += ["", "## OATS over widths (3 epochs)", "",
                  "Clean / PGD-20 accuracy (%) of each sub-network at each λ:", "",
                  "| width | " + " | ".join(lam.replace("lambda=", "λ=") for lam in lambdas) + " |",
                  "|---|" + "---:|" * len(lambdas)]
        for width in widths:
            cells = [f"{pct(oats[f'{width},{lam}'].clean_acc)} / {pct(oats[f'{width},{lam}'].pgd.acc)}"
                     for lam in lambdas]
            lines.append(f"| {width.split('=')[1]} | " + " | ".join(cells) + " |")
        narrow, full = widths[0], widths[-1]
        for lam in (lambdas[0], lambdas[-1]):
            a, b = oats[f"{narrow},{lam}"], oats[f"{full},{lam}"]
            lines.append(f"\nAt {lam.replace('lambda=', 'λ = ')}, the {narrow.split('=')[1]}-width sub-network is "
                         f"{100 * (a.clean_acc - b.clean_acc):+.2f} points in clean and "
                         f"{100 * (a.pgd.acc - b.pgd.acc):+.2f} points in PGD-20 accuracy from the full "
                         "width.")
        if "oats" in finished:
            lines += ["", "Each width of the OATS model is a line in the trade-off plot above."]
    lines += ["", f"The whole evaluation report (every setting, corruption errors, gradient-masking checks): "
              f"[{REPORT.name}/report.md]({REPORT.name}/report.md)."]
    return "\n".join(lines) + "\n"


def film_ablation(official: dict, residual: dict) -> list[str]:
    """OAT with the official FiLM (scale starts near 0) against FiLM as 1 + Δ (scale starts near 1)."""
    lines = ["", "### FiLM initialisation", "",
             "The same OAT run with `model.film_residual=true`: FiLM scales features by 1 + Δ(λ) instead of the",
             "official Δ(λ), so the network starts as the plain one. Accuracies in %; Δ = residual minus official,",
             "with two standard errors of the difference.", "",
             "| λ | official clean | residual clean | Δ clean | official PGD-20 | residual PGD-20 | Δ PGD-20 |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    clean_gains, robust_beyond = [], []
    for key in sorted(official, key=lambda k: float(k.split("=")[1])):
        a, b = official[key], residual[key]
        cells = []
        for value, images in ((lambda s: s["clean_accuracy"], 10000), (lambda s: s["attack_accuracy"]["pgd20"], 1000)):
            tolerance = difference_tolerance(value(a), value(b), images)
            delta = value(b) - value(a)
            cells += [pct(value(a)), pct(value(b)), f"{100 * delta:+.2f} (±{100 * tolerance:.1f})"]
            if images == 10000:
                clean_gains.append(delta)
            elif abs(delta) > tolerance:
                robust_beyond.append(f"λ = {float(key.split('=')[1]):g} ({100 * delta:+.2f})")
        lines.append(f"| {float(key.split('=')[1]):g} | " + " | ".join(cells) + " |")
    lines += ["", f"FiLM as 1 + Δ changes clean accuracy by {100 * min(clean_gains):+.2f} to "
              f"{100 * max(clean_gains):+.2f} "
              "points across λ; PGD-20 accuracy moves beyond noise " + (
                  "at " + ", ".join(robust_beyond) if robust_beyond else "at no λ") + ". " + (
                  "The official initialisation (scale near 0) is thus a large part of OAT's clean-accuracy gap at "
                  "this scale" if min(clean_gains) > 0.02 else "The initialisation explains little of OAT's gap "
                  "at this scale") + "; `film_residual` stays off by default because the official code is what "
              "the paper's numbers come from."]
    return lines


def reading(comparisons, film_ablation_done: bool) -> list[str]:
    """Whether OAT matches each dedicated model: a difference within two standard errors of the
    difference (binomial, from the numbers of test images) counts as a match."""
    lines = ["### Reading", ""]
    all_matched = True
    for lam, delta_clean, delta_robust, s, d in comparisons:
        verdicts = []
        for what, delta, images, key in (("clean accuracy", delta_clean, 10000, None),
                                         ("PGD-20 accuracy", delta_robust, 1000, "pgd20")):
            ours = s["attack_accuracy"][key] if key else s["clean_accuracy"]
            theirs = d["attack_accuracy"][key] if key else d["clean_accuracy"]
            tolerance = difference_tolerance(ours, theirs, images)
            if abs(delta) <= tolerance:
                verdicts.append(f"matches its {what} ({100 * delta:+.2f} points, within ±{100 * tolerance:.1f})")
            else:
                all_matched = False
                side = "above" if delta > 0 else "below"
                verdicts.append(f"is {100 * abs(delta):.2f} points {side} in {what} (beyond ±{100 * tolerance:.1f})")
        lines.append(f"- λ = {lam:g}: OAT " + " and ".join(verdicts) + ".")
    if comparisons:
        lines += ["", "At this scale OAT matches every dedicated model, as the paper claims." if all_matched else
                  "At this scale OAT does not match every dedicated model, against the paper's claim (made for "
                  "200-epoch ResNet-34 / WRN training); the lines above say where it differs."]
        lines += ["", "Not tested here, but likely at this scale: every λ sees only its share of each batch (λ = 0 "
                  "gets 22 of 128 samples, each non-zero λ about 21), so in 5 epochs each setting trains on about a "
                  "sixth of what its dedicated model sees. "
                  + ("The official FiLM's scale near 0 at the start is tested below." if film_ablation_done else
                     "The official FiLM starts with a scale near 0, which may slow the first epochs of a network "
                     "without residual paths such as this small CNN.")]
    return lines


if __name__ == "__main__":
    main()
