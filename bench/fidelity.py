"""Is `robustrain corrupt` the generator behind the released CIFAR-10-C? Compare it with numbers
computed once from the reference generator (hendrycks/robustness make_cifar_c.py).

    python bench/fidelity.py                  # check: all 19 corruptions x 5 severities, about 90 s
    python bench/fidelity.py --benchmark tinyimagenetc     # the Tiny-ImageNet-C table at 64x64
    python bench/fidelity.py --build-reference seed0.npz seed1.npz --provenance provenance.json

The check corrupts the 1,017 byte-exact CIFAR-10 test images of ../shared/data/cifar10-exact
with our generator (seed 0, CIFAR table), computes per corruption and severity the statistics of
robustrain.corruptions.fidelity (mean absolute change, per-image spread, mean change) and the error
of a fixed small CNN (bench/fidelity/small_cnn_standard.safetensors: configs/cpu/standard_cifar10.yaml,
seed 0, 75.75% clean accuracy on the JPEG test set), and compares each with the reference's
(bench/fidelity/cifar10c_reference.json) within the tolerances stated in that module. It writes
docs/results/fidelity.json and docs/results/fidelity.md, the per-corruption table of
docs/corruptions.md, and exits 1 if any check fails.

With --benchmark tinyimagenetc the same statistics (no model: there is no Tiny-ImageNet here)
compare our Tiny-ImageNet-C table with make_tinyimagenet_c.py on the first 500 of those images
enlarged to 64x64 (Pillow bicubic), against bench/fidelity/tinyimagenetc_reference.json, and go to
docs/results/fidelity-tinyimagenetc.{md,json}.

--build-reference makes a reference JSON from the reference generator's output on the same images:
.npz files (one per NumPy seed) holding `clean` (N, H, W, 3) uint8 and one uint8 array per
"<corruption>/<severity>" of the same shape. Nothing here runs or ships the reference code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robustrain.corruptions import CORRUPTIONS, SEVERITIES, GENERATOR_VERSION, blur, corrupt_uint8  # noqa: E402
from robustrain.corruptions.fidelity import Reference, check_all, key, measure, model_error  # noqa: E402
from robustrain.models import create_model  # noqa: E402

EXACT = ROOT.parent / "shared" / "data" / "cifar10-exact" / "cifar10_exact_subset.npz"
REFERENCE = ROOT / "bench" / "fidelity" / "cifar10c_reference.json"
MODEL = ROOT / "bench" / "fidelity" / "small_cnn_standard.safetensors"
IMAGES = "the 1,017 byte-exact CIFAR-10 test images of cifar10_exact_subset.npz (x_test, in file order)"


def exact_test_images(path: Path = EXACT) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(path)
    return data["x_test"], data["y_test"].astype(np.int64)


def enlarged_test_images(path: Path = EXACT, count: int = 500, side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` exact test images enlarged to side x side with Pillow's bicubic filter."""
    images, labels = exact_test_images(path)
    return (np.stack([np.asarray(Image.fromarray(image).resize((side, side), Image.BICUBIC))
                      for image in images[:count]]), labels[:count])


@dataclass(frozen=True)
class Benchmark:
    table: str
    reference: Path
    images: Callable[[Path], tuple[np.ndarray, np.ndarray]]
    description: str
    uses_model: bool
    page: str                  # docs/results/<page>.md and .json


BENCHMARKS = {
    "cifar10c": Benchmark("cifar", REFERENCE, exact_test_images, IMAGES, True, "fidelity"),
    "tinyimagenetc": Benchmark("tinyimagenet", ROOT / "bench" / "fidelity" / "tinyimagenetc_reference.json",
                               enlarged_test_images, "the first 500 of the 1,017 byte-exact CIFAR-10 test images of "
                               "cifar10_exact_subset.npz, enlarged to 64x64 "
                               "(Pillow bicubic)", False, "fidelity-tinyimagenetc"),
}


def fixed_model(path: Path = MODEL) -> torch.nn.Module:
    model = create_model("small_cnn", 10, width=16)
    model.load_state_dict(load_file(path))
    return model.eval()


def our_sets(clean: np.ndarray, names=tuple(CORRUPTIONS), seed: int = 0, table: str = "cifar") -> dict[str, np.ndarray]:
    images = torch.from_numpy(clean).permute(0, 3, 1, 2).contiguous()
    return {key(name, severity): corrupt_uint8(images, name, severity, seed=seed, table=table)
            .permute(0, 2, 3, 1).numpy() for name in names for severity in SEVERITIES}


def exchanging_glass_walk(offsets: np.ndarray, height: int, width: int, delta: int) -> np.ndarray:
    """Glass blur's walk as generator v2 had it, each pixel exchanged with its neighbour (the
    reference copies): kept to show what the check catches (--glass-blur-v2, tests/test_fidelity.py)."""
    source = np.tile(np.arange(height * width), (offsets.shape[-1], 1))
    images = np.arange(offsets.shape[-1])
    for here, there in blur.glass_walk_steps(offsets, height, width, delta):
        moved = source[:, here].copy()
        source[:, here] = source[images, there]
        source[images, there] = moved
    return source


def build_reference(benchmark: Benchmark, files: list[Path], provenance: dict) -> Reference:
    clean, labels = benchmark.images(EXACT)
    model = fixed_model() if benchmark.uses_model else None
    per_seed = []
    for file in files:
        data = np.load(file)
        if not np.array_equal(data["clean"], clean):
            raise SystemExit(f"{file}: its clean images are not {benchmark.description}")
        per_seed.append(measure(clean, labels, {k: data[k] for k in data.files if k != "clean"}, model))
    names = per_seed[0][0].keys()
    return Reference(benchmark.description, len(clean), tuple(range(len(files))),
                     {k: tuple(changes[k] for changes, _ in per_seed) for k in names},
                     {k: tuple(errors[k] for _, errors in per_seed) for k in per_seed[0][1]},
                     model_error(model, clean, labels) if model else None, provenance, benchmark.table)


def markdown(checks, reference: Reference, seconds: float, command: str) -> str:
    rows, overall = {}, []
    for c in checks:
        if c.severity == 0:
            overall.append(c)
        else:
            rows.setdefault((c.corruption, c.severity), {})[c.statistic] = c
    with_model = bool(reference.model_errors)
    lines = ["| corruption | sev. | mean abs. change: ours / ref. (tol.) | mean change: ours / ref. | "
             + ("model error %: ours / ref. (tol.) | |" if with_model else "|"),
             "|---|---:|---:|---:|" + ("---:|---|" if with_model else "---|")]
    for (name, severity), row in rows.items():
        mac, mc = row["mean_abs_change"], row["mean_change"]
        err = row.get("model_error")
        error_cell = (f"{100 * err.ours:.1f} / {100 * err.reference:.1f} (±{100 * err.tolerance:.1f}) | "
                      if err else "")
        verdict = "ok" if all(c.passed for c in row.values()) else "**differs**"
        lines.append(f"| {name} | {severity} | {mac.ours:.2f} / {mac.reference:.2f} (±{mac.tolerance:.2f}) | "
                     f"{mc.ours:+.2f} / {mc.reference:+.2f} | {error_cell}{verdict} |")
    failed = sum(not c.passed for c in checks)
    model_text = (f"; the fixed model's clean error is {100 * reference.clean_error:.2f}%"
                  if reference.clean_error is not None else "")
    head = [f"# Corruption fidelity: robustrain against the reference generator ({reference.table} table)", "",
            f"Produced by `{command}` (from the project root, in the project's virtualenv).", "",
            f"Images: {reference.image_count} ({reference.images}). Ours: generator v{GENERATOR_VERSION}, seed 0, "
            f"{reference.table} table. Reference: {reference.provenance.get('generator', '?')}, NumPy seeds "
            f"{', '.join(map(str, reference.seeds))} (mean shown). Changes are in levels of 255{model_text}. "
            f"Tolerances: robustrain/corruptions/fidelity.py. "
            f"{len(checks) - failed} of {len(checks)} checks pass ({seconds:.0f} s here).", ""]
    summary = [f"The fixed model's error, {c.corruption} (the 15 benchmark corruptions x 5 severities): ours "
               f"{100 * c.ours:.2f}%, reference {100 * c.reference:.2f}% (tolerance ±{100 * c.tolerance:.2f}): "
               f"{'ok' if c.passed else '**differs**'}." for c in overall]
    return "\n".join(head + summary + [""] + lines) + "\n"


def by_corruption(checks) -> str:
    """One row per corruption: the largest gap of each statistic over its severities, in tolerances."""
    rows = {}
    for c in checks:
        if c.severity:
            rows.setdefault(c.corruption, []).append(c)
    with_model = any(c.statistic == "model_error" for c in checks)
    statistics = ("mean_abs_change", "mean_change") + (("model_error",) if with_model else ())
    lines = ["| corruption | largest gap / tolerance: " + ", ".join(s.replace("_", " ") for s in statistics) + " | "
             + ("model error % (mean of 5 severities): ours / reference | |" if with_model else "|"),
             "|---|---|" + ("---:|---|" if with_model else "---|")]
    for name, row in rows.items():
        worst = [max(abs(c.ours - c.reference) / c.tolerance for c in row if c.statistic == stat)
                 for stat in statistics]
        errors = [c for c in row if c.statistic == "model_error"]
        error_cell = ""
        if errors:
            ours, ref = (100 * sum(getattr(c, side) for c in errors) / len(errors) for side in ("ours", "reference"))
            error_cell = f"{ours:.1f} / {ref:.1f} | "
        verdict = "ok" if all(c.passed for c in row) else "**differs**"
        lines.append(f"| {name} | {', '.join(f'{w:.2f}' for w in worst)} | {error_cell}{verdict} |")
    return "\n".join(lines)


def replace_block(page: Path, text: str, name: str) -> None:
    """Put `text` between the page's markers for benchmark `name`."""
    begin = f"<!-- {name} fidelity table: written by bench/fidelity.py -->"
    end = f"<!-- end of {name} fidelity table -->"
    content = page.read_text()
    if begin not in content or end not in content:
        raise SystemExit(f"{page} has no fidelity markers")
    head, rest = content.split(begin, 1)
    page.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def run_check(name: str, out_dir: Path) -> int:
    benchmark = BENCHMARKS[name]
    reference = Reference.from_json(json.loads(benchmark.reference.read_text()))
    clean, labels = benchmark.images(EXACT)
    start = time.time()
    changes, errors = measure(clean, labels, our_sets(clean, table=benchmark.table),
                              fixed_model() if benchmark.uses_model else None)
    checks = check_all(reference, changes, errors)
    seconds = time.time() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python bench/fidelity.py" + ("" if name == "cifar10c" else f" --benchmark {name}")
    (out_dir / f"{benchmark.page}.json").write_text(json.dumps(
        {"command": command, "generator_version": GENERATOR_VERSION, "seed": 0, "table": benchmark.table,
         "reference": benchmark.reference.name, "images": reference.images, "checks": [c.to_json() for c in checks]},
        indent=1) + "\n")
    (out_dir / f"{benchmark.page}.md").write_text(markdown(checks, reference, seconds, command))
    if out_dir.resolve() == (ROOT / "docs" / "results").resolve():
        replace_block(ROOT / "docs" / "corruptions.md", by_corruption(checks), name)
    failed = [c for c in checks if not c.passed]
    for c in failed:
        print(f"differs: {c.corruption} severity {c.severity} {c.statistic}: ours {c.ours:.4f}, reference "
              f"{c.reference:.4f}, tolerance {c.tolerance:.4f}")
    print(f"{len(checks) - len(failed)} of {len(checks)} checks pass; tables in {out_dir}/{benchmark.page}.md")
    return 1 if failed else 0


def glass_blur_v2(benchmark: Benchmark) -> int:
    """The numbers docs/corruptions.md quotes for the v2 glass blur: its change and model error
    against the reference's (seed mean), per severity."""
    reference = Reference.from_json(json.loads(benchmark.reference.read_text()))
    clean, labels = benchmark.images(EXACT)
    blur.glass_walk = exchanging_glass_walk
    changes, errors = measure(clean, labels, our_sets(clean, ("glass_blur",), table=benchmark.table),
                              fixed_model() if benchmark.uses_model else None)
    print("| severity | mean abs. change: v2 / reference | model error %: v2 / reference |\n|---:|---:|---:|")
    for name, stats in changes.items():
        reference_change = np.mean([r.mean_abs_change for r in reference.changes[name]])
        error = (f"{100 * errors[name]:.1f} / {100 * np.mean(reference.model_errors[name]):.1f}"
                 if name in errors else "-")
        print(f"| {name.rsplit('/', 1)[1]} | {stats.mean_abs_change:.1f} / {reference_change:.1f} | {error} |")
    if errors:
        print(f"model error, mean of 5 severities: v2 {100 * np.mean(list(errors.values())):.1f}%, reference "
              f"{100 * np.mean([np.mean(reference.model_errors[n]) for n in errors]):.1f}%")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-reference", nargs="+", type=Path, metavar="NPZ",
                        help="the reference generator's outputs, one file per seed")
    parser.add_argument("--provenance", type=Path, help="with --build-reference: JSON saying how they were made")
    parser.add_argument("--benchmark", choices=tuple(BENCHMARKS), default="cifar10c")
    parser.add_argument("--glass-blur-v2", action="store_true",
                        help="print glass blur made with generator v2's exchanging walk against the reference")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args()
    if args.build_reference:
        benchmark = BENCHMARKS[args.benchmark]
        provenance = json.loads(args.provenance.read_text()) if args.provenance else {}
        reference = build_reference(benchmark, args.build_reference, provenance)
        benchmark.reference.write_text(json.dumps(reference.to_json(), indent=1) + "\n")
        print(f"wrote {benchmark.reference}")
        return 0
    if args.glass_blur_v2:
        return glass_blur_v2(BENCHMARKS[args.benchmark])
    return run_check(args.benchmark, args.out)


if __name__ == "__main__":
    sys.exit(main())
