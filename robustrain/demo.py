"""The embedded demo: standard training against PGD-AT on scikit-learn's digits, on a CPU in minutes."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import from_dict
from .corruptions import BENCHMARK, SEVERITIES
from .evaluate import Suite, evaluate
from .results import RunResults
from .runs import RunFolder
from .train import RunConfig, resolve_device, train
from .train.load import load_run

DEMO_EPS = 0.1
DEMO_RUNS = {
    "standard": {"name": "standard"},
    "pgd_at": {"name": "pgd_at", "steps": 10},
}
# The 15 benchmark corruptions x 5 severities and PGD-20 on the whole test set (grey digits are
# corrupted as RGB), so that `robustrain report ... --suite demo` shows both.
DEMO_SUITE = Suite("demo", BENCHMARK, SEVERITIES, None, ("pgd20",), None, ())


def demo_config(method: dict, out: Path, epochs: int, device: str, seed: int) -> RunConfig:
    """Small CNN (width 16) on 8x8 digits; eps 0.1 on [0, 1] pixels; light cropping (pad 1), no flips."""
    return from_dict(RunConfig, {
        "data": {"name": "digits", "augment": "crop", "crop_padding": 1},
        "model": {"name": "small_cnn", "width": 16},
        "method": method,
        "threat": {"norm": "linf", "eps": DEMO_EPS},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
        "schedule": {"name": "cosine"},
        "eval": {"pgd_steps": 20},
        "epochs": epochs, "batch_size": 64, "seed": seed, "device": device, "out": str(out),
    })


@dataclass(frozen=True)
class DemoRow:
    """One demo run: its end-of-training results and its mean corruption error (15 x 5)."""

    results: RunResults
    corruption_error: float


def run_demo(out: str | None = None, epochs: int = 15, device: str = "auto", seed: int = 0,
             progress: bool = True) -> dict[str, DemoRow]:
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="robustrain-demo-"))
    results = {}
    for label, method in DEMO_RUNS.items():
        print(f"training {label} on digits ({epochs} epochs) -> {root / label}")
        trained = train(demo_config(method, root / label, epochs, device, seed), progress=progress)
        run = load_run(root / label)
        evaluation = evaluate(run.model, run.test_set, DEMO_SUITE, eps=DEMO_EPS,
                              out=RunFolder(root / label).evaluation_file("demo"), device=resolve_device(device),
                              seed=seed, progress=False)
        results[label] = DemoRow(trained, evaluation["summary"]["model"]["mean_corruption_error"])
    print()
    print(format_table(results))
    print(f"\nThe run folders are kept in {root}" + ("" if out else " (a temporary folder; delete it when done)")
          + f"; compare them with `robustrain report {root / 'standard'} {root / 'pgd_at'} --suite demo --out REPORT`.")
    return results


def format_table(results: dict[str, DemoRow]) -> str:
    first = next(iter(results.values())).results.model.pgd
    header = f"PGD-{first.steps} acc (eps {first.eps:g}, {first.norm})"
    corruption = "mean corruption error (15 x 5)"
    lines = [f"| method   | clean acc | {header} | {corruption} | fwd+bwd passes per image |",
             f"|----------|-----------|{'-' * (len(header) + 2)}|{'-' * (len(corruption) + 2)}|"
             "--------------------------|"]
    for label, row in results.items():
        measured = row.results.model
        lines.append(f"| {label:<8} | {100 * measured.clean_acc:8.1f}% "
                     f"| {100 * measured.pgd.acc:{len(header) - 1}.1f}% "
                     f"| {100 * row.corruption_error:{len(corruption) - 1}.1f}% "
                     f"| {row.results.cost.forward_backward_per_image:24.0f} |")
    return "\n".join(lines)
