"""Fast AT on a GPU against Wong, Rice & Kolter's recipe: which of our departures from the official
`train_fgsm.py` costs the clean accuracy that a first H100 run missed (77.35% against 83.8%)?
Writes docs/results/fast-at-departures.md and docs/results/fast-at-departures.json (issue 19).

    python scripts/fast_at_departures.py --data-root DIR --device cuda --jobs 3   # about 4 minutes on an H100
    python scripts/fast_at_departures.py --render RUNS_DIR   # the page from RUNS_DIR/study.json the run wrote
    python scripts/fast_at_departures.py --tiny               # every arm a few seconds on a CPU

Every arm trains configs/paper/fast_at_cifar10_preact_resnet18.yaml (PreAct-ResNet-18, FGSM-RS
alpha 10/255 at eps 8/255, 15 epochs, batch 128, one-cycle to lr 0.2, SGD momentum 0.9, wd 5e-4)
on all 50,000 cifar10-jpeg training images with channels_last, then measures clean accuracy and
PGD-20 (step 2/255, one random start) on all 10,000 test images. The arms differ in what the
official code does differently:
  as-configured   FGSM step in eval mode, lr peak at 1/2 of training, bf16 autocast (the first run);
  bn-train        the FGSM step in train mode (batch statistics; the attack pass updates the running ones);
  official        bn-train, the peak at 2/5 of training (np.interp over [0, 2*epochs//5, epochs]),
                  and fp16 with loss scaling (the official code: apex amp O2 with dynamic loss scale).
The arms run side by side on one GPU (`--jobs`), so their epoch times are not solo speeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from common import ROOT, RunSpec, ensure_runs, write_study
from robustrain.runs import RunFolder

DOC, SOURCE = ROOT / "docs/results/fast-at-departures.md", ROOT / "docs/results/fast-at-departures.json"
CONFIG = "configs/paper/fast_at_cifar10_preact_resnet18.yaml"
PUBLISHED = {"clean_acc": 0.838, "pgd": 0.461,
             "source": "Wong, Rice & Kolter 2020 (ICLR), FGSM-RS alpha 10/255, 15 epochs on one RTX 2080 Ti; "
                       "PGD-50 with 10 restarts on the CIFAR-10 test set"}
TINY = ("epochs=1", "batch_size=32", "data.train_limit=64", "eval.pgd_limit=16", "eval.pgd_steps=2", "model.name=resnet20")


@dataclass(frozen=True)
class Arm:
    label: str
    description: str
    flags: tuple[str, ...]
    sets: tuple[str, ...] = ()


ARMS = (
    Arm("as-configured", "FGSM in eval mode, lr peak at 1/2, bf16", ("--precision", "bf16")),
    Arm("bn-train", "FGSM in train mode, lr peak at 1/2, bf16", ("--precision", "bf16"), ("method.bn_mode=train",)),
    Arm("official", "FGSM in train mode, lr peak at 2/5, fp16 with loss scaling", ("--precision", "fp16"),
        ("method.bn_mode=train", "schedule.peak_fraction=0.4")),
)


def spec(arm: Arm, runs_dir: str, args) -> RunSpec:
    sets = (*arm.sets, *(TINY if args.tiny else ()))
    device = ("--device", "cpu") if args.tiny else ("--device", args.device, "--channels-last", *arm.flags)
    return RunSpec(CONFIG, f"{runs_dir}/{arm.label}-s{args.seed}",
                   ("--seed", str(args.seed), "--data-root", args.data_root, *device,
                    *(arg for setting in sets for arg in ("--set", setting))))


def arm_record(arm: Arm, run: Path) -> dict | None:
    """What a finished run measured, or None."""
    folder = RunFolder(run)
    results = folder.results()
    if results is None:
        return None
    metrics = folder.metrics()
    config = folder.config_mapping()
    return {"arm": arm.label, "description": arm.description, "run": run.name,
            "settings": {"precision": config.get("precision"), "bn_mode": config["method"].get("bn_mode", "eval"),
                         "peak_fraction": config["schedule"].get("peak_fraction"), "seed": config.get("seed")},
            "clean_acc": results["clean_acc"], "pgd_acc": results["pgd"]["acc"], "pgd": results["pgd"],
            "test_images": results["test_images"],
            "test_acc_by_epoch": [m.get("test_acc") for m in metrics],
            "train_acc_by_epoch": [m["train_acc"] for m in metrics],
            "median_epoch_s": statistics.median(m["epoch_time_s"] for m in metrics),
            "train_time_s": results["cost"]["train_time_s"]}


def study_of(runs_dir: Path, seed: int, device: str, commit: str) -> dict:
    arms = [record for arm in ARMS if (record := arm_record(arm, runs_dir / f"{arm.label}-s{seed}")) is not None]
    return {"published": PUBLISHED, "device": device, "torch": torch.__version__, "commit": commit, "arms": arms}


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def render(study: dict) -> str:
    rows = [f"| {a['arm']} | {a['description']} | {100 * a['clean_acc']:.2f} | {100 * a['pgd_acc']:.2f} | "
            f"{100 * a['train_acc_by_epoch'][-1]:.1f} | {a['median_epoch_s']:.1f} | "
            + " ".join(f"{100 * t:.0f}" for t in a["test_acc_by_epoch"] if t is not None) + " |"
            for a in study["arms"]]
    published = study["published"]
    return "\n".join([
        "# Fast AT on a GPU: which departure from the official code costs accuracy", "",
        "Made by `python scripts/fast_at_departures.py` (the command and arms are in its docstring); "
        "numbers in `fast-at-departures.json`.", "",
        f"Trained with the code at commit {study['commit'] or 'unknown'} on {study['device']}, "
        f"torch {study['torch']}.", "",
        f"Published: {100 * published['clean_acc']:.1f}% clean, {100 * published['pgd']:.1f}% PGD "
        f"({published['source']}). Ours: PGD-20, step 2/255, one random start, on all 10,000 test "
        "images of cifar10-jpeg (JPEG-compressed CIFAR-10), one seed per arm.", "",
        "| arm | what differs | clean (%) | PGD-20 (%) | last-epoch FGSM train acc (%) | epoch (s, arms side by side) "
        "| test accuracy by epoch (%) |",
        "|---|---|---:|---:|---:|---:|---|", *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--jobs", type=int, default=len(ARMS), help="arms trained at the same time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs/fast-at-departures")
    parser.add_argument("--commit", default="", help="the commit trained, recorded in RUNS_DIR/study.json")
    parser.add_argument("--render", metavar="RUNS_DIR", help="write the page from RUNS_DIR/study.json")
    parser.add_argument("--tiny", action="store_true", help="every arm a few seconds on a CPU; prints the page")
    args = parser.parse_args()
    if args.render:
        write_study(json.loads((Path(args.render) / "study.json").read_text()), render, DOC, SOURCE)
        return
    runs_dir = args.runs_dir + ("-tiny" if args.tiny else "")
    from robustrain.data import load_dataset

    for split in ("train", "test"):  # decode once into the cache before the arms start together
        load_dataset("cifar10", args.data_root, split)
    ensure_runs([spec(arm, runs_dir, args) for arm in ARMS], train=True, jobs=args.jobs)
    study = study_of(ROOT / runs_dir, args.seed, device_name("cpu" if args.tiny else args.device), args.commit)
    (ROOT / runs_dir / "study.json").write_text(json.dumps(study, indent=1) + "\n")
    print(render(study))


if __name__ == "__main__":
    main()
