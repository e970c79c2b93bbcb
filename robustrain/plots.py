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
    _save(figure, path)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    atomic_write(Path(path), lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)


def plot_scatter(points: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str,
                 path: Path) -> None:
    """One labelled point per run; a run with several points (a conditioned model's settings) is a
    line through them: its trade-off curve."""
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    for label, xy in points.items():
        xs, ys = zip(*xy)
        axes.plot(xs, ys, marker="o", linestyle="-" if len(xy) > 1 else "none", markersize=7, label=label)
        axes.annotate(label, xy[-1], textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path)


def plot_grouped_bars(groups: list[str], values: dict[str, list[float]], ylabel: str, title: str, path: Path) -> None:
    """Bars per group (x axis), one colour per label."""
    figure, axes = plt.subplots(figsize=(max(7, 0.6 * len(groups) * max(1, len(values)) / 2), 4.5), dpi=120)
    width = 0.8 / max(len(values), 1)
    for k, (label, ys) in enumerate(values.items()):
        axes.bar([i + (k - (len(values) - 1) / 2) * width for i in range(len(groups))], ys, width, label=label)
    axes.set_xticks(range(len(groups)))
    axes.set_xticklabels([g.replace("_", " ") for g in groups], rotation=45, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8)
    _save(figure, path)


def plot_curves(curves: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """One line with markers per label."""
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    for label, xy in curves.items():
        xs, ys = zip(*sorted(xy))
        axes.plot(xs, ys, marker="o", label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path)
