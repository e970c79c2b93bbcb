"""Plots written to PNG files (matplotlib without a display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_write  # noqa: E402


def plot_learning_rate(epochs: list[float], lrs: list[float], title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    axes.plot(epochs, lrs, color="tab:blue", linewidth=2)
    axes.set_xlabel("training progress (epochs)")
    axes.set_ylabel("learning rate")
    axes.set_title(title)
    axes.set_xlim(0, epochs[-1])
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    atomic_write(Path(path), lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)
