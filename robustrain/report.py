"""Reports: evaluated runs side by side as Markdown, JSON and plots."""

from __future__ import annotations

ATTACK_LABELS = {"fgsm": "FGSM", "pgd20": "PGD-20", "autoattack": "AutoAttack"}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def summary_lines(summary: dict) -> list[str]:
    """A short plain-text account of one evaluation's summary, per condition."""
    lines = []
    for condition, s in summary.items():
        parts = [f"clean {_pct(s['clean_accuracy'])}%"]
        if "mean_corruption_error" in s:
            parts.append(f"mean corruption error {_pct(s['mean_corruption_error'])}%")
        if "mce" in s:
            parts.append(f"mCE {_pct(s['mce'])}%")
        for name, acc in s["attack_accuracy"].items():
            parts.append(f"{ATTACK_LABELS.get(name, name)} {_pct(acc)}%")
        if "worst_case_accuracy" in s:
            parts.append(f"worst case {_pct(s['worst_case_accuracy'])}%")
        lines.append(f"{condition}: " + ", ".join(parts))
        lines += [f"  warning: {f['name']}: {f['detail']}" for f in s["gradient_masking"] if f["fired"]]
    return lines
