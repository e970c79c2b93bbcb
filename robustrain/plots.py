"""Plots written to PNG files (matplotlib without a display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_write  # noqa: E402


def plot_learning_rates(curves: dict[str, tuple[list[float], list[float]]], title: str, path: Path) -> None:
    """One line per label: learning rate against training progress in epochs."""
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    for label, (epochs, lrs) in curves.items():
        axes.plot(epochs, lrs, linewidth=2, label=label)
    axes.set_xlabel("training progress (epochs)")
    axes.set_ylabel("learning rate")
    axes.set_title(title)
    axes.set_xlim(0, max(e[-1] for e, _ in curves.values()))
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    if len(curves) > 1:
        axes.legend()
    figure.tight_layout()
    atomic_write(Path(path), lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)
