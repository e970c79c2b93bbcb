"""docs/results/gpu-speed.md and docs/results/gpu-speed.json from what `bench/gpu.py` wrote on a GPU.

    python bench/gpu_report.py RUN/gpu-speed.json [MORE.json ...] [--before EARLIER.json ...] [--mixed-commits] \
        [--page gpu-speed-h200]

The files given first are one measurement (one commit, one device; several calls of bench/gpu.py
with different stages); `--before` files, of an earlier commit on the same device, add a
before/after column. The page states every goal of issue 18 as met, missed or not measured.
`--page` names the page (docs/results/PAGE.md and .json): gpu-speed is the reference machine's
(an H100), a measurement on another device gets a page of its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/results"
TRAIN_IMAGES, TEST_IMAGES, SEVERITIES = 50_000, 10_000, 5


def merged(paths: list[Path], mixed_commits: bool = False) -> dict:
    """One measurement from several gpu-speed.json files (bench/gpu.py's, or a page's merged source) of
    the same device and torch, and of the same commit unless `mixed_commits` (calls of one lease
    between which a commit changed code that the benchmark does not run): then each row keeps its
    file's commit and the record names them all."""
    records = [json.loads(Path(p).read_text()) for p in paths]
    for key in ("device", "torch") + (() if mixed_commits else ("commit",)):
        if len({r[key] for r in records}) != 1:
            raise SystemExit(f"the files differ in {key}: {sorted({r[key] for r in records})}; give one measurement.")
    commits = list(dict.fromkeys(r["commit"] for r in records))
    rows = [row | ({"commit": r["commit"]} if len(commits) > 1 else {}) for r in records for row in r["rows"]]
    return {"device": records[0]["device"], "torch": records[0]["torch"], "commit": ", ".join(commits),
            "commands": [c for r in records for c in r.get("commands", [r.get("command")])], "rows": rows}


def same_device(before: dict, device: str) -> dict:
    """`before`, if it was measured on `device`: images/s of two kinds of GPU are not a before and after."""
    if before["device"] != device:
        raise SystemExit(f"the --before files were measured on {before['device']}, this measurement on {device}; "
                         "give an earlier measurement on the same device.")
    return before


PEERS = ("plain loop", "torchattacks", "ART")


def by_what(rows: list[dict]) -> dict[str, dict]:
    """The measured rows (not the profile's, nor those that say why nothing was measured) by what they measured."""
    return {row["what"]: row for row in rows if row.get("stage") != "profile" and "not_measured" not in row}


def peer_of(what: str) -> tuple[str, str] | None:
    """(setting, peer) of a peer's row, e.g. ("pgd10_at preact_resnet18 b512 bf16 cl", "ART")."""
    for peer in PEERS:
        if what.endswith(" " + peer):
            return what[:-len(peer) - 1], peer
    return None


def goals(rows: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(goal, verdict, the numbers behind it)."""
    out = []
    trainer = rows.get("pgd10_at preact_resnet18 b512 bf16 cl robustrain train")
    if trainer:
        seconds = trainer["seconds_per_epoch"]
        out.append(("PGD-10 AT, PreAct-ResNet-18, batch 512, bf16: at most 10 s per epoch",
                    "met" if seconds <= 10 else "missed", f"{_epoch_measured(trainer)} of `robustrain train`: "
                                                          f"{seconds:.1f} s"))
    # whichever precision is faster: the goal is about the time, not the setting
    timed = {precision: row for precision in ("bf16", "fp32")
             if (row := rows.get(f"fast_at preact_resnet18 b128 {precision} cl robustrain train"))}
    if timed:
        totals = {p: r.get("first_epoch_s", r["seconds_per_epoch"]) + 14 * r["seconds_per_epoch"]
                  for p, r in timed.items()}
        precision = min(totals, key=totals.get)
        fast, total = timed[precision], totals[precision]
        out.append(("fast AT, 15 epochs of PreAct-ResNet-18: under 60 s", "met" if total < 60 else "missed",
                    f"{precision}, {_epoch_measured(fast)} {fast['seconds_per_epoch']:.1f} s, so about {total:.0f} s"
                    + "".join(f"; {p}: about {t:.0f} s" for p, t in totals.items() if p != precision)))
    written = rows.get(f"robustrain corrupt 19 x5 {TEST_IMAGES} images files")
    corruptions = [r for r in rows.values() if r["what"].startswith("corrupt ")]
    corruption_goal = "the 19 x 5 CIFAR-10-C from 10,000 test images: under 60 s with writing"
    if written:
        out.append((corruption_goal, "met" if written["seconds"] < 60 else "missed",
                    f"`robustrain corrupt` on the device, files written: {written['seconds']:.0f} s"))
    elif len(corruptions) == 19:
        images = int(corruptions[0]["what"].split()[-2])
        seconds = sum(r["seconds"] for r in corruptions)
        estimate = seconds * TEST_IMAGES / images
        out.append((corruption_goal, "not decided",
                    f"{seconds:.1f} s for {images:,} images, so about {estimate:.0f} s for 10,000 if it scales "
                    "linearly, without writing the files: not measured as the goal states it"))
    suite = next((r for what, r in rows.items() if what.startswith("standard suite ")), None)
    out.append(("standard suite of a PreAct-ResNet-18: under 3 minutes",
                ("met" if suite["seconds"] < 180 else "missed") if suite else "not measured",
                f"`evaluate(..., \"standard\")` on {suite['images']:,} test images: {suite['seconds']:.0f} s"
                if suite else "no trained PreAct-ResNet-18 was on the device"))
    for what, row in rows.items():
        if "vs_robustrain" not in row or peer_of(what) is None:
            continue
        setting, tool = peer_of(what)
        ours = row["vs_robustrain"]  # the peer's time over ours
        if tool == "plain loop":
            out.append((f"{setting}: at least 0.95x a plain PyTorch loop in the same precision and layout",
                        "met" if ours >= 0.95 else "missed", f"{ours:.2f}x"))
        elif what.startswith("pgd10_at"):
            out.append((f"{setting}: at least 2x {tool}", "met" if ours >= 2 else "missed", f"{ours:.2f}x"))
    precision = next((r for what, r in rows.items() if what.startswith("bf16 against fp32 ")), None)
    if precision:
        fp32, bf16 = precision["accuracies"]["fp32"], precision["accuracies"]["bf16"]
        out.append(("bf16 within 0.3 points of fp32 (clean and PGD-20, 1,000 images)",
                    "met" if precision["gap_points"] <= 0.3 else "missed",
                    f"clean {100 * fp32['clean']:.2f} / {100 * bf16['clean']:.2f}%, PGD-20 {100 * fp32['pgd20']:.2f} / "
                    f"{100 * bf16['pgd20']:.2f}% (fp32 / bf16): largest gap {precision['gap_points']:.2f} points"))
    else:
        out.append(("bf16 within 0.3 points of fp32 (clean and PGD-20, 1,000 images)", "not measured",
                    "needs a trained model on the device (the suite stage of `bench/gpu.py --model-run RUN`)"))
    return out


def _epoch_measured(row: dict) -> str:
    """Which epoch a trainer row timed: the second of two (rows since the H200 lease) or the only one."""
    if "first_epoch_s" in row:
        return f"the second epoch (the first, with warm-up: {row['first_epoch_s']:.1f} s)"
    return "one epoch (the first, warm-up included)"


def cuda_graphs(now: dict[str, dict]) -> list[str]:
    """What CUDA graphs (`compile_mode: reduce-overhead`) cost and change, where measured: the peak memory
    of the compile stage's first step (compiling, capturing, the graph pool), and a fast AT run trained
    under them against the same run in eager mode (same seed): test accuracy after 2 epochs, the larger
    of the two epochs' peak memory."""
    lines = []
    step = "pgd10_at preact_resnet18 b512 bf16 cl robustrain --compile"
    peaks = [(mode, now[step + suffix].get("first_step_peak_memory_mb")) for mode, suffix in
             (("default", ""), ("reduce-overhead", " reduce-overhead")) if step + suffix in now]
    if any(peak for _, peak in peaks):
        lines.append("Peak memory from compiling to the end of the first step (the graph pool included): "
                     + ", ".join(f"{mode} {peak:.0f} MiB" for mode, peak in peaks if peak) + ".")
    run = "fast_at preact_resnet18 b128 bf16 cl robustrain train"
    graphs, eager = now.get(run + " compile reduce-overhead"), now.get(run)
    if graphs and eager and "test_acc" in graphs and "test_acc" in eager:
        peak = {name: max(row["peak_memory_mb"], row["first_epoch_peak_memory_mb"])
                for name, row in (("graphs", graphs), ("eager", eager))}
        lines.append(f"Fast AT trained under CUDA graphs, 2 epochs: test accuracy {100 * graphs['test_acc']:.2f}% "
                     f"against {100 * eager['test_acc']:.2f}% eager (same seed and data order: they differ by GPU "
                     f"non-determinism and by what CUDA graphs change); {graphs['seconds_per_epoch']:.1f} s against "
                     f"{eager['seconds_per_epoch']:.1f} s for the second epoch; peak memory {peak['graphs']:.0f} "
                     f"against {peak['eager']:.0f} MiB.")
    return ["## CUDA graphs", "", *lines, ""] if lines else []


def render(study: dict, page: str = "gpu-speed") -> str:
    now = by_what(study["rows"])
    before = by_what(study["before"]["rows"]) if study.get("before") else {}
    head = "| what | images/s | s per epoch (50,000 images) | peak memory (MiB) | peer's time / ours |"
    if before:
        head += f" images/s at {study['before']['commit']} |"
    lines = [head, "|---|---:|---:|---:|---:|" + ("---:|" if before else "")]
    for what, row in now.items():
        if "images_per_s" not in row or what.startswith(("corrupt ", "robustrain corrupt ")):
            continue
        cells = [what, f"{row['images_per_s']:.0f}",
                 f"{row['seconds_per_epoch']:.1f}" if row.get("seconds_per_epoch") else "–",
                 f"{row['peak_memory_mb']:.0f}" if row.get("peak_memory_mb") else "–",
                 f"{row['vs_robustrain']:.2f}" if "vs_robustrain" in row else "–"]
        if before:
            cells.append(f"{before[what]['images_per_s']:.0f}" if what in before else "–")
        lines.append("| " + " | ".join(cells) + " |")
    corruptions = ["| corruption | s for 5 severities | images/s |", "|---|---:|---:|"] + [
        f"| {row['what'].split()[1]} | {row['seconds']:.2f} | {row['images_per_s']:.0f} |"
        for row in now.values() if row["what"].startswith("corrupt ")]
    earlier = {row["what"]: row for row in study["before"]["rows"] if "seconds_per_step" in row} if before else {}
    profile = [row for row in study["rows"] if "seconds_per_step" in row]
    profiled = [f"Profile of one `{p['what']}` step under torch.profiler: {p['seconds_per_step'] * 1e3:.0f} ms per "
                f"step with the profiler on, GPU kernels {p['kernel_seconds_per_step'] * 1e3:.0f} ms of it "
                f"({100 * p['kernel_seconds_per_step'] / p['seconds_per_step']:.0f}% busy); host "
                f"synchronisations per step (CUDA sync debug mode): {p['host_syncs_per_step']}"
                + (f" (at {study['before']['commit']}: {earlier[p['what']]['host_syncs_per_step']})"
                   if p["what"] in earlier else "") + "."
                for p in profile]
    verdicts = ["| goal | verdict | measured |", "|---|---|---|"] + [f"| {g} | {v} | {m} |" for g, v, m in goals(now)]
    return "\n".join([
        "# robustrain on a GPU: speed against a plain loop, torchattacks and ART", "",
        "Made by `python bench/gpu_report.py` from what `bench/gpu.py` measured (commands below); the numbers "
        f"are in `{page}.json` beside this page.", "",
        f"Device: {study['device']}; torch {study['torch']}; code at commit {study['commit']}"
        + (f" (each row's commit is in {page}.json)" if "," in study["commit"] else "") + ". Commands: "
        + "; ".join(f"`{c}`" for c in study["commands"]) + ".", "",
        "Training rows time one step on a fixed random batch (robustrain: the pgd_at or standard method's step, "
        "backward and SGD update; the peers: their attack, then the same update), median of 5 interleaved "
        "rounds; `cl` is channels_last, bf16 is autocast; ART runs in fp32 with NumPy in and out, as documented. "
        "`robustrain train` rows are one real epoch of the trainer (data, augmentation, the step, metrics). "
        "\"peer's time / ours\" above 1 means robustrain is faster.", "",
        *lines, "", *profiled, "",
        *cuda_graphs(now),
        "## Goals (issue 18)", "", *verdicts, "",
        *(["## Corruptions on the device", "",
           "Each corruption at its 5 severities on the first 2,000 CIFAR-10 test images, as `robustrain corrupt` "
           "makes them (uint8, generator of the current version, draws on CPU generators):", "", *corruptions, ""]
          if len(corruptions) > 2 else [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="gpu-speed.json files of one measurement")
    parser.add_argument("--before", nargs="*", type=Path, default=[], help="gpu-speed.json files of an earlier commit")
    parser.add_argument("--mixed-commits", action="store_true",
                        help="the files are of several commits that differ only in code the benchmark does not run")
    parser.add_argument("--page", default="gpu-speed", help="the page's name in docs/results (default: gpu-speed)")
    args = parser.parse_args()
    study = merged(args.files, args.mixed_commits)
    if args.before:
        study["before"] = same_device(merged(args.before, mixed_commits=True), study["device"])
    doc, source = RESULTS / f"{args.page}.md", RESULTS / f"{args.page}.json"
    source.write_text(json.dumps(study, indent=1) + "\n")
    doc.write_text(render(study, args.page))
    print(f"wrote {doc.relative_to(ROOT)} and {source.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
