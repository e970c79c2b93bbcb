"""Reports: evaluated runs side by side as Markdown, JSON and plots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .attacks.norms import format_radius
from .attacks.registry import ATTACKS
from .corruptions import BENCHMARK
from .errors import RobustrainError
from .evaluate.metrics import ALEXNET_ERRORS
from .io import atomic_write_text
from .runs import RunFolder

ATTACK_LABELS = {name: attack.label for name, attack in ATTACKS.items()}


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def summary_lines(summary: dict, name: str = "model") -> list[str]:
    """A short plain-text account of one evaluation's summary, per condition (a plain model's line
    is labelled `name`)."""
    lines = []
    for condition, s in summary.items():
        parts = [f"clean accuracy {_pct(s['clean_accuracy'])}%"]
        if "corruption_error" in s:
            parts.append(f"corruption error {_pct(s['corruption_error'])}%")
        if "mce" in s:
            parts.append(f"mCE {_pct(s['mce'])}%")
        for attack, acc in s["attack_accuracy"].items():
            parts.append(f"{ATTACK_LABELS.get(attack, attack)} accuracy {_pct(acc)}%")
        if "worst_case_accuracy" in s:
            parts.append(f"worst-case accuracy {_pct(s['worst_case_accuracy'])}%")
        lines.append(f"{name if condition == 'model' else condition}: " + ", ".join(parts))
        lines += [f"  warning: {f['name']}: {f['detail']}" for f in s["gradient_masking"] if f["fired"]]
    return lines


def evaluated_suites(run: Path) -> list[str]:
    """The evaluations a run folder holds, by name."""
    return RunFolder(run).evaluations()


def common_suite(runs: list[Path]) -> str:
    """The one evaluation every run has; the error names what they have when it is not one."""
    common = set.intersection(*(set(evaluated_suites(run)) for run in runs))
    if len(common) == 1:
        return common.pop()
    if not common:
        raise RobustrainError(f"{', '.join(map(str, runs))} share no evaluation; run "
                              "`robustrain eval RUN --suite quick` (or another suite) on each first")
    raise RobustrainError(f"the runs share the evaluations {', '.join(sorted(common))}; choose one with --suite")


def load_evaluation(run: Path, suite: str) -> dict:
    path = RunFolder(run).evaluation_file(suite)
    if not path.is_file():
        present = evaluated_suites(run)
        held = f" (it holds {', '.join(present)}: pass --suite to use one)" if present else ""
        raise RobustrainError(f"{run} has no {path.relative_to(run)}{held}; run "
                              f"`robustrain eval {run} --suite {suite}` first")
    evaluation = json.loads(path.read_text())
    if "summary" not in evaluation:
        raise RobustrainError(f"the evaluation in {path} did not finish; run `robustrain eval {run} --suite {suite}` "
                              "again to complete it")
    return evaluation


def _robust_key(summary: dict) -> str | None:
    for name in ("autoattack", "pgd20", "fgsm"):
        if name in summary["attack_accuracy"]:
            return name
    return None


def _corruption_means(summary: dict) -> dict[str, float]:
    return {n: 1 - sum(a) / len(a) for n, a in summary["corruption_accuracy"].items()}




def _series(name: str, condition: str) -> str:
    """The trade-off line a row belongs to: a run, or one width of a slimmable run; the λ
    settings of a conditioned model are the points along its line."""
    rest = [part for part in condition.split(",") if not part.startswith("lambda=") and part != "model"]
    return name + (f" [{','.join(rest)}]" if rest else "")


def _describe(key: str, p: dict) -> str:
    """One protocol entry in words."""
    if p["kind"] == "corruption":
        # Results files written before the generator had versions are version 1.
        source = p["files"] if "files" in p else "generated with the {table} table, seed {seed}, generator v{version}" \
            .format(**{"version": 1, **p["generated"]})
        return f"corruptions: {p['images']} test images each (subset seed {p['subset_seed']}), {source}"
    norm = "L-inf" if p["norm"] == "linf" else "L2"
    head = f"{key.split('/')[-1]}: {norm}, eps {format_radius(p['eps'], p['norm'])}"
    if p["attack"] == "autoattack":
        body = f"AutoAttack {p['version']} ({', '.join(p['components'])})"
    else:
        body = (f"{p.get('steps', 1)} step(s) of {format_radius(p['step_size'], p['norm'])}, {p.get('restarts', 1)} "
                f"restart(s), {p.get('random_start', 'no')} random start, {p.get('loss', 'ce').upper()} loss")
    return f"{head}, {body}, {p['images']} images (subset seed {p['subset_seed']}), attack seed {p['seed']}"


def _protocol_lines(evaluation: dict) -> list[str]:
    """The settings every number of one evaluation was measured under, read from its entries."""
    header = evaluation["header"]
    lines = [f"data: {header['dataset']['name']} {header['dataset']['split']}, {header['dataset']['images']} images; "
             f"clean accuracy on all of them"]
    if "weight_bits" in header:
        lines.append(f"weights: {header['weight_bits']}-bit (symmetric, per output channel)")
    for key, entry in evaluation["entries"].items():
        kind = entry["protocol"]["kind"]
        if kind == "attack" or (kind == "corruption" and not any(line.startswith("corruptions") for line in lines)):
            lines.append(_describe(key, entry["protocol"]))
    return lines


def _flag_line(label: str, flags: list[dict]) -> str:
    fired = [f"**{f['name']}**: {f['detail']}" for f in flags if f["fired"]]
    if fired:
        return f"- {label}: " + "; ".join(fired)
    curve = next((f["detail"] for f in flags if f["name"] == "accuracy not falling with eps"), None)
    return f"- {label}: none of the {len(flags)} checks fired" + (f" ({curve.rstrip('.')})" if curve else "") + "."


@dataclass(frozen=True)
class _Row:
    """One evaluated setting: its label in tables, the run it belongs to, and its summary."""

    label: str
    run: str
    series: str
    summary: dict


def write_report(runs: list[Path], out: Path, *, suite: str | None = None,
                 names: list[str] | None = None) -> list[Path]:
    """report.md, report.json and plots comparing evaluated runs; returns the written paths.

    suite: which evaluation of each run (eval/<suite>.json); by default the one evaluation all runs have."""
    for run in runs:
        if not run.is_dir():
            raise RobustrainError(f"{run} is not a folder; expected run folders evaluated with `robustrain eval`")
    suite = suite or common_suite(runs)
    if names is not None and len(names) != len(runs):
        raise RobustrainError(f"--names gives {len(names)} labels for {len(runs)} runs")
    names = names or [run.name for run in runs]
    evaluations = {name: load_evaluation(run, suite) for name, run in zip(names, runs)}
    rows = _rows(evaluations)
    attack_names = sorted({k for row in rows for k in row.summary["attack_accuracy"]}, key=list(ATTACK_LABELS).index)
    corruption_names = [n for n in BENCHMARK if all(n in row.summary["corruption_accuracy"] for row in rows)]
    corruption_names += [n for n in rows[0].summary["corruption_accuracy"] if n not in corruption_names
                         and all(n in row.summary["corruption_accuracy"] for row in rows)]
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(rows, evaluations, suite, corruption_names, out)
    markdown = [f"# Evaluation report (suite {suite})", "",
                "Accuracies and errors in %. Corruption error: the unnormalized mean error over the suite's "
                "corruptions and severities (suite standard: the 15 benchmark corruptions x 5 severities, the "
                "CIFAR convention). Worst case: images that survive every attack of the suite.", "",
                *_summary_table(rows, evaluations, attack_names), "",
                "## Error per corruption (mean over severities, %)", "",
                *_per_corruption_table(rows, corruption_names), "",
                *_imagenet_c_section(rows, evaluations),
                *(f"![{p.stem}]({p.name})" for p in plots),
                "", "## Gradient-masking checks", "",
                *(_flag_line(row.label, row.summary["gradient_masking"]) for row in rows),
                "", "## Protocols", "", *_protocols_section(evaluations)]
    atomic_write_text(out / "report.md", "\n".join(markdown) + "\n")
    report = {"suite": suite, "runs": {name: {"folder": str(run), **evaluations[name]}
                                       for name, run in zip(names, runs)}}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    return [out / "report.md", out / "report.json", *plots]


def _rows(evaluations: dict[str, dict]) -> list[_Row]:
    """One row per run and test-time setting (a conditioned run has several)."""
    return [_Row(name + (f" [{condition}]" if condition != "model" else ""), name, _series(name, condition), summary)
            for name, evaluation in evaluations.items() for condition, summary in evaluation["summary"].items()]


def _plots(rows: list[_Row], evaluations: dict[str, dict], suite: str, corruption_names: list[str],
           out: Path) -> list[Path]:
    """The plots the rows allow (trade-offs, error per corruption, accuracy against eps); their paths."""
    from .plots import plot_curves, plot_grouped_bars, plot_scatter

    written = []
    robust = {row.label: _robust_key(row.summary) for row in rows}
    tradeoff = {}
    for row in rows:
        if robust[row.label] is not None:
            tradeoff.setdefault(row.series, []).append(
                (100 * row.summary["clean_accuracy"], 100 * row.summary["attack_accuracy"][robust[row.label]]))
    if tradeoff:
        strongest = sorted({k for k in robust.values() if k}, key=list(ATTACK_LABELS).index)
        attacks = " / ".join(ATTACK_LABELS[a] for a in strongest)
        plot_scatter(tradeoff, "clean accuracy (%)", f"robust accuracy (%), {attacks}",
                     "Accuracy against adversarial robustness", out / "clean_vs_robust.png")
        written.append(out / "clean_vs_robust.png")
    corruption = {}
    for row in rows:
        if "corruption_error" in row.summary:
            corruption.setdefault(row.run, []).append((100 * row.summary["clean_accuracy"],
                                                       100 * row.summary["corruption_error"]))
    if corruption:
        plot_scatter(corruption, "clean accuracy (%)", f"corruption error (%), suite {suite}",
                     "Accuracy against corruption error (lower is better)", out / "clean_vs_corruption.png")
        written.append(out / "clean_vs_corruption.png")
    if corruption_names:
        means = {row.label: _corruption_means(row.summary) for row in rows}
        plot_grouped_bars(corruption_names, {label: [100 * means[label][n] for n in corruption_names]
                                             for label in means},
                          "error (%), mean over the severities", "Error per corruption", out / "corruption_errors.png")
        written.append(out / "corruption_errors.png")
    curves = {row.label: [(255 * e, 100 * a) for e, a in row.summary["eps_curve"]]
              for row in rows if len(row.summary["eps_curve"]) > 1}
    if curves:
        norm = next(iter(evaluations.values()))["header"]["threat"]["norm"]
        plot_curves(curves, f"eps ({norm}, in units of 1/255)", "PGD-20 robust accuracy (%)",
                    "Robust accuracy against the attack radius", out / "accuracy_vs_eps.png")
        written.append(out / "accuracy_vs_eps.png")
    return written


def _summary_table(rows: list[_Row], evaluations: dict[str, dict], attack_names: list[str]) -> list[str]:
    worst_case = ["worst case"] if attack_names else []
    headers = ["run", "clean acc.", "corruption error", *(ATTACK_LABELS[a] for a in attack_names), *worst_case,
               "gradient-masking flags", "eval time"]
    table = [_row(headers), _row(["---"] + ["---:"] * (len(headers) - 3) + ["---", "---:"])]
    for row in rows:
        s = row.summary
        fired = [f["name"] for f in s["gradient_masking"] if f["fired"]]
        seconds = sum(e["seconds"] for e in evaluations[row.run]["entries"].values())
        worst = [_pct(s.get("worst_case_accuracy"))] if attack_names else []
        table.append(_row([row.label, _pct(s["clean_accuracy"]), _pct(s.get("corruption_error")),
                           *(_pct(s["attack_accuracy"].get(a)) for a in attack_names), *worst,
                           ", ".join(fired) or "none", f"{seconds / 60:.1f} min"]))
    return table


def _per_corruption_table(rows: list[_Row], corruption_names: list[str]) -> list[str]:
    table = ["| run | " + " | ".join(n.replace("_", " ") for n in corruption_names) + " |",
             "|---|" + "---:|" * len(corruption_names)]
    for row in rows:
        means = _corruption_means(row.summary)
        table.append(f"| {row.label} | " + " | ".join(f"{100 * means[n]:.1f}" for n in corruption_names) + " |")
    return table


def _severity_table(evaluation: dict) -> str | None:
    """The severity table the evaluation generated its corruptions with ("files" when it read them)."""
    for entry in evaluation["entries"].values():
        protocol = entry["protocol"]
        if protocol["kind"] == "corruption":
            return protocol["generated"]["table"] if "generated" in protocol else "files"
    return None


def _imagenet_c_section(rows: list[_Row], evaluations: dict[str, dict]) -> list[str]:
    """For ImageNet-scale data (the imagenet or tinyimagenet severity table, or released files):
    the error of every benchmark corruption measured and, where all five severities of all 15 were
    measured on ImageNet-C's table, AlexNet-normalised CE and mCE (Hendrycks & Dietterich, 2019)."""
    tables = {name: _severity_table(evaluation) for name, evaluation in evaluations.items()}
    if not any(table in ("imagenet", "tinyimagenet") for table in tables.values()) and \
            not any("mce" in row.summary for row in rows):
        return []
    names = [n for n in BENCHMARK if any(n in row.summary["corruption_accuracy"] for row in rows)]
    lines = ["## ImageNet-C", "",
             "Error per benchmark corruption (%, mean over the severities measured), with its CE in parentheses: the "
             "error over the five severities divided by AlexNet's, the ImageNet-C convention. CE and mCE are given "
             "only for runs measured at all five severities of all 15 corruptions (suite standard or corruptions) "
             "with ImageNet-C's severity table or its released files; Tiny-ImageNet-C has no AlexNet normaliser and "
             "is reported unnormalised, as in its release.", "",
             "| run | severity table | mCE | " + " | ".join(n.replace("_", " ") for n in names) + " |",
             "|---|---|---:|" + "---:|" * len(names)]
    for row in rows:
        errors, normalised = _corruption_means(row.summary), "mce" in row.summary
        cells = ["–" if n not in errors else f"{100 * errors[n]:.1f}"
                 + (f" ({100 * errors[n] / ALEXNET_ERRORS[n]:.1f})" if normalised else "") for n in names]
        mce_cell = _pct(row.summary["mce"]) if normalised else "–"
        lines.append(f"| {row.label} | {tables[row.run]} | {mce_cell} | " + " | ".join(cells) + " |")
    return lines + [""]


def _protocols_section(evaluations: dict[str, dict]) -> list[str]:
    """The protocols once when every run shares them, else per run."""
    protocols = {name: _protocol_lines(evaluation) for name, evaluation in evaluations.items()}
    if len({tuple(lines) for lines in protocols.values()}) == 1:
        return ["Every run:", ""] + [f"- {line}" for line in next(iter(protocols.values()))]
    return [line for name, lines in protocols.items() for line in [f"{name}:", ""] + [f"- {x}" for x in lines] + [""]]
