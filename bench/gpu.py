"""robustrain's speed on a GPU, against a plain PyTorch loop, torchattacks and ART (issue 18).

One script for one lease of a GPU: each stage runs in its own process under its own time limit
and adds its rows to OUT/gpu-speed.json as soon as it has them, so a run cut short keeps what it
measured. `--tiny` runs every stage end to end on a CPU in seconds (the tests do).

Stages
  steps        one training step, images/s and peak memory: standard and PGD-10 AT of
               PreAct-ResNet-18 (batch 128 and 512) and WRN-34-10 (batch 128), fp32 and bf16
               autocast, with and without channels_last. Tools on the same model, batch and
               precision: robustrain (the trainer's path: `method.step`, backward, SGD step), the
               plain loop of bench/at_overhead.py, torchattacks.PGD (the documented call) plus the
               same update, and ART's ProjectedGradientDescentPyTorch (fp32, NumPy in and out, as
               documented). Each configuration's tools are timed in interleaved rounds.
  compile      the robustrain PGD-10 step with every model path compiled, as `--compile` does, in
               torch.compile's default mode and in reduce-overhead (CUDA graphs; `compile_mode`);
               the first step's time, compilation included, is recorded too.
  profile      torch.profiler over robustrain's PGD-10 steps and the plain loop's (OUT/gpu-profile.txt:
               where each spends host and device time) and the number of host synchronisations
               one robustrain step makes (CUDA's sync debug mode).
  corruptions  seconds of each of the 19 corruptions at its 5 severities on CIFAR-10 test
               images, as `robustrain corrupt` makes them on the device.
  corrupt_files
               the whole of `robustrain corrupt` on the device: the 19 x 5 CIFAR-10-C from all
               10,000 test images, files written (the goal's measurement).
  suite        on a trained model (`--model-run`, e.g. the repro stage's fast AT PreAct-ResNet-18):
               the standard evaluation suite's wall time, and clean and PGD-20 accuracy on 1,000
               test images in fp32 and under bf16 autocast (the precision goal).
  trainer      one epoch of `robustrain train` on CIFAR-10 (PGD-10 AT at batch 512, fast AT at
               batch 128, and fast AT with the training split streamed; bf16, channels_last): the
               whole loop, data and augmentation included.

Rows: {"stage", "what", "images_per_s", "seconds_per_epoch" (training rows: 50,000 images),
"peak_memory_mb", ...}; "what" reads e.g. "pgd10_at preact_resnet18 b512 bf16 cl robustrain".

    python bench/gpu.py --out OUT --data-root DIR [--stages steps profile] [--tiny]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from at_overhead import bare_attack, bare_training_step, robustrain_at_step
from peers import (art_pgd, device_name, interleaved_times, precision_accuracies, precision_gap_points, random_start,
                   synchronized_seconds)
from robustrain.io import atomic_write
from robustrain.methods import StepContext, Threat, create_method
from robustrain.models import create_model

ROOT = Path(__file__).resolve().parents[1]
EPS, ALPHA = 8 / 255, 2 / 255
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
TRAIN_IMAGES = 50_000
STAGES = ("steps", "compile", "profile", "corruptions", "trainer", "corrupt_files", "suite")
LIMITS_S = {"steps": 110, "compile": 90, "profile": 40, "corruptions": 60, "trainer": 180, "corrupt_files": 120,
            "suite": 240}
PRECISION_IMAGES = 1000
# (method, config, batch, what the row adds to its name, extra settings): the last is fast AT with the
# training split streamed (decoded and augmented by worker processes every epoch) instead of resident
# (method, config, batch, precision, label, extra arguments); fast AT in fp32 too: on the H200, PGD-10 steps
# at batch 128 ran faster in fp32 than under bf16 autocast (launch-bound; autocast adds cast kernels)
TRAINER_RUNS = (("pgd10_at", "configs/paper/pgd_at_cifar10_preact_resnet18.yaml", 512, "bf16", "", ()),
                ("fast_at", "configs/paper/fast_at_cifar10_preact_resnet18.yaml", 128, "bf16", "", ()),
                ("fast_at", "configs/paper/fast_at_cifar10_preact_resnet18.yaml", 128, "fp32", "", ()),
                ("fast_at", "configs/paper/fast_at_cifar10_preact_resnet18.yaml", 128, "bf16", " streamed",
                 ("--set", "data.stream=true")),
                # the same seed under CUDA graphs: its test accuracy and memory against the eager bf16 row's
                ("fast_at", "configs/paper/fast_at_cifar10_preact_resnet18.yaml", 128, "bf16",
                 " compile reduce-overhead", ("--set", "compile=true", "--set", "compile_mode=reduce-overhead")))


@dataclass(frozen=True)
class StepConfig:
    """One timed configuration: a method step on a model at a batch size and precision."""

    method: str  # "standard" or "pgd10_at"
    model: str
    batch: int
    bf16: bool
    channels_last: bool
    tools: tuple[str, ...]

    def what(self, tool: str) -> str:
        precision = "bf16" if self.bf16 else "fp32"
        return f"{self.method} {self.model} b{self.batch} {precision}{' cl' if self.channels_last else ''} {tool}"


def step_grid(tiny: bool) -> list[StepConfig]:
    """The configurations of the steps stage, most wanted first (a cut run keeps the first)."""
    if tiny:
        return [StepConfig("pgd10_at", "resnet20", 4, False, True, ("robustrain", "plain loop", "torchattacks", "ART")),
                StepConfig("standard", "resnet20", 4, False, False, ("robustrain", "plain loop"))]
    peers = ("robustrain", "plain loop", "torchattacks")
    grid = [StepConfig("pgd10_at", "preact_resnet18", 512, True, True, peers),
            StepConfig("pgd10_at", "preact_resnet18", 512, True, False, ("robustrain",)),
            StepConfig("pgd10_at", "preact_resnet18", 512, False, True, ("robustrain",)),
            StepConfig("pgd10_at", "preact_resnet18", 512, False, False, peers),
            StepConfig("pgd10_at", "preact_resnet18", 128, True, True, peers),
            StepConfig("pgd10_at", "preact_resnet18", 128, False, False, peers + ("ART",)),
            StepConfig("standard", "preact_resnet18", 512, True, True, ("robustrain", "plain loop")),
            StepConfig("standard", "preact_resnet18", 512, False, False, ("robustrain", "plain loop")),
            StepConfig("standard", "preact_resnet18", 128, True, True, ("robustrain", "plain loop")),
            StepConfig("pgd10_at", "wrn34_10", 128, True, True, ("robustrain", "plain loop")),
            StepConfig("pgd10_at", "wrn34_10", 128, False, False, ("robustrain",))]
    return grid


def add_rows(out: Path, rows: list[dict]) -> None:
    """Append rows to OUT/gpu-speed.json, rewriting it whole so it is never half written."""
    path = out / "gpu-speed.json"
    record = json.loads(path.read_text())
    record["rows"].extend(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    for row in rows:
        print(json.dumps(row), flush=True)


def autocast_of(device: torch.device, bf16: bool):
    return (lambda: torch.autocast(device.type, torch.bfloat16)) if bf16 else nullcontext


def fresh_model(name: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, 10, mean=MEAN, std=STD)
    return model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)


def synthetic_batch(batch: int, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (batch,), generator=generator).to(device)


def robustrain_step(config: StepConfig, model, x, y, autocast):
    """The trainer's step: the method's loss, backward, SGD update."""
    method = create_method("standard" if config.method == "standard" else "pgd_at",
                           {} if config.method == "standard" else {"steps": 10, "step_size": ALPHA},
                           Threat(norm="linf", eps=EPS))
    ctx = StepContext.seeded(0, x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return lambda: robustrain_at_step(method, model, optimizer, x, y, ctx, autocast)


def peer_step(tool: str, config: StepConfig, model, x, y, autocast, device):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if config.method == "standard":
        def plain():
            with autocast():
                bare_training_step(model, optimizer, x, y)
        return plain
    if tool == "plain loop":
        def plain_at():
            with autocast():
                x_adv = bare_attack(model, random_start(x), y, EPS, ALPHA, 10)
                bare_training_step(model, optimizer, x_adv, y)
        return plain_at
    if tool == "torchattacks":
        import torchattacks

        attack = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=10, random_start=True)

        def torchattacks_at():
            with autocast():
                x_adv = attack(x, y)
                bare_training_step(model, optimizer, x_adv, y)
        return torchattacks_at
    if tool == "ART":  # fp32 only, as documented
        attack = art_pgd(model, device, 10, len(x))
        return lambda: bare_training_step(model, optimizer, attack(x, y), y)
    raise ValueError(f"unknown tool {tool!r}")


def available(tool: str) -> bool:
    module = {"torchattacks": "torchattacks", "ART": "art"}.get(tool)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def peak_memory_mb(work, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    synchronized_seconds(work, device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def training_rows(stage: str, config: StepConfig, variants: dict, rounds: int, device) -> list[dict]:
    times = interleaved_times(variants, rounds, device)
    rows = []
    for tool, values in times.items():
        seconds = statistics.median(values)
        rows.append({"stage": stage, "what": config.what(tool), "images_per_s": config.batch / seconds,
                     "seconds_per_epoch": TRAIN_IMAGES / config.batch * seconds,
                     "peak_memory_mb": peak_memory_mb(variants[tool], device), "rounds": rounds,
                     **({"vs_robustrain": statistics.median(values) / statistics.median(times["robustrain"])}
                        if tool != "robustrain" else {})})
    return rows


def stage_steps(args, device) -> None:
    for config in step_grid(args.tiny):
        x, y = synthetic_batch(config.batch, device, config.channels_last)
        autocast = autocast_of(device, config.bf16)
        base = fresh_model(config.model, device, config.channels_last)
        variants, missing = {}, []
        for tool in config.tools:
            if not available(tool):
                missing.append(tool)
                continue
            model = copy.deepcopy(base)
            variants[tool] = (robustrain_step(config, model, x, y, autocast) if tool == "robustrain"
                              else peer_step(tool, config, model, x, y, autocast, device))
        rows = training_rows("steps", config, variants, args.rounds, device)
        rows += [{"stage": "steps", "what": config.what(tool), "not_measured": f"{tool} is not installed"}
                 for tool in missing]
        add_rows(args.out, rows)
        del variants, base
        if device.type == "cuda":
            torch.cuda.empty_cache()


COMPILE_MODES = ("default", "reduce-overhead")  # inductor as `--compile` uses it; with CUDA graphs


def stage_compile(args, device) -> None:
    """The robustrain PGD-10 step with every model path compiled, as `--compile` does, in each of
    `COMPILE_MODES` (`compile_mode`); a mode that fails says why in its row."""
    config = step_grid(args.tiny)[0]
    x, y = synthetic_batch(config.batch, device, config.channels_last)
    autocast = autocast_of(device, config.bf16)
    for mode in COMPILE_MODES:
        label = "robustrain --compile" + ("" if mode == "default" else f" {mode}")
        torch._dynamo.reset()
        model = fresh_model(config.model, device, config.channels_last)
        # The tiny mode checks the path with the eager backend (which ignores the mode): inductor
        # costs minutes on a CPU.
        model.compile(backend="eager" if args.tiny else "inductor", mode=mode)
        try:
            if device.type == "cuda":  # from here: compiling, capturing CUDA graphs (their pool) and the first step
                torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            step = robustrain_step(config, model, x, y, autocast)
            synchronized_seconds(step, device)
            compile_s = time.perf_counter() - started
            first_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            rows = training_rows("compile", config, {"robustrain": step}, args.rounds, device)
        except Exception as error:  # a mode the model or torch build cannot take is a result, not a crash
            add_rows(args.out, [{"stage": "compile", "what": config.what(label),
                                 "not_measured": f"{type(error).__name__}: {error}"[:500]}])
            continue
        rows[0].update(what=config.what(label), first_step_s=compile_s, first_step_peak_memory_mb=first_peak)
        add_rows(args.out, rows)


def host_syncs(step, device: torch.device) -> int | None:
    """Host synchronisations one call of `step` makes, as counted by CUDA's sync debug mode."""
    if device.type != "cuda":
        return None
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def profiled(step, steps: int, device: torch.device):
    """(seconds per step, kernel seconds per step or None, the profiler's table) of `step` under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    wall = (time.perf_counter() - started) / steps
    events = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    kernel_s = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA") / 1e6 / steps \
        if device.type == "cuda" else None
    return wall, kernel_s, events.table(sort_by=sort, row_limit=30)


def stage_profile(args, device) -> None:
    """robustrain's PGD-10 step and the plain loop's on the same model and batch, each profiled; the
    host time beside the kernel time says which step keeps the GPU waiting."""
    config = step_grid(args.tiny)[0]
    x, y = synthetic_batch(config.batch, device, config.channels_last)
    autocast = autocast_of(device, config.bf16)
    steps = 1 if args.tiny else 3
    report, rows = [], []
    for tool in ("robustrain", "plain loop"):
        model = fresh_model(config.model, device, config.channels_last)
        step = (robustrain_step(config, model, x, y, autocast) if tool == "robustrain"
                else peer_step(tool, config, model, x, y, autocast, device))
        synchronized_seconds(step, device)
        syncs = host_syncs(step, device)
        wall, kernel_s, table = profiled(step, steps, device)
        report.append(f"{config.what(tool)}: {steps} steps under torch.profiler, {wall:.4f} s per step\n\n{table}\n")
        rows.append({"stage": "profile", "what": config.what(tool), "seconds_per_step": wall,
                     "kernel_seconds_per_step": kernel_s,
                     "device_busy_fraction": kernel_s / wall if kernel_s is not None else None,
                     "host_syncs_per_step": syncs})
    (args.out / "gpu-profile.txt").write_text("\n".join(report))
    add_rows(args.out, rows)


def stage_corruptions(args, device) -> None:
    from robustrain.corruptions import CORRUPTIONS, SEVERITIES, corrupt_uint8
    from robustrain.data import load_dataset

    test_set = load_dataset("cifar10", args.data_root, "test")
    count = 100 if args.tiny else args.corruption_images
    images = test_set.images[:count].to(device)
    names = list(CORRUPTIONS)[:2] if args.tiny else list(CORRUPTIONS)
    for name in names:
        started = time.perf_counter()
        for severity in SEVERITIES:
            corrupt_uint8(images, name, severity).cpu()
        seconds = time.perf_counter() - started
        add_rows(args.out, [{"stage": "corruptions", "what": f"corrupt {name} x5 severities {count} images",
                             "seconds": seconds, "images_per_s": count * len(SEVERITIES) / seconds}])


def stage_trainer(args, device) -> None:
    import tempfile

    measured = set()
    for method, config, batch, precision, label, extra in TRAINER_RUNS:
        model, batch, precision = ("resnet20", 32, "fp32") if args.tiny else ("preact_resnet18", batch, precision)
        what = f"{method} {model} b{batch} {precision} cl robustrain train{label}"
        # the tiny mode runs every precision as fp32, and nothing compiled (inductor costs minutes on a CPU)
        if what in measured or (args.tiny and "compile=true" in extra):
            continue
        measured.add(what)
        with tempfile.TemporaryDirectory() as folder:
            settings = ["--batch-size", str(batch), "--precision", precision, "--set", f"model.name={model}",
                        *(["--set", "data.train_limit=64"] if args.tiny else [])]
            # two epochs: the second is the steady pace (the first pays for cuDNN's plans and the allocator)
            subprocess.run([sys.executable, "-m", "robustrain", "train", "--config", config, "--epochs", "2",
                            "--data-root", args.data_root, "--device", str(device), "--channels-last",
                            "--out", f"{folder}/run", "--no-progress", "--set", "eval.pgd_limit=100", *settings,
                            *extra],
                           cwd=ROOT, check=True)
            first, epoch = (json.loads(line) for line in
                            (Path(folder) / "run" / "metrics.jsonl").read_text().splitlines()[:2])
        add_rows(args.out, [{"stage": "trainer", "what": what,
                             "images_per_s": epoch["images_per_s"], "seconds_per_epoch": epoch["epoch_time_s"],
                             "first_epoch_s": first["epoch_time_s"], "peak_memory_mb": epoch["peak_memory_mb"],
                             "first_epoch_peak_memory_mb": first["peak_memory_mb"], "test_acc": epoch["test_acc"]}])


def stage_corrupt_files(args, device) -> None:
    """`robustrain corrupt` whole: every corruption at 5 severities from the test images, written as files."""
    import tempfile

    from robustrain.corruptions import CORRUPTIONS, SEVERITIES, write_corrupted
    from robustrain.data import load_dataset

    test_set = load_dataset("cifar10", args.data_root, "test")
    count = min(100, len(test_set)) if args.tiny else len(test_set)
    names = list(CORRUPTIONS)[:2] if args.tiny else list(CORRUPTIONS)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        write_corrupted(folder, test_set.images[:count], test_set.labels[:count], names, seed=0, device=device)
        seconds = time.perf_counter() - started
    add_rows(args.out, [{"stage": "corrupt_files", "what": f"robustrain corrupt {len(names)} x5 {count} images files",
                         "corruptions": len(names), "images": count, "seconds": seconds,
                         "images_per_s": count * len(SEVERITIES) * len(names) / seconds}])


def stage_suite(args, device) -> None:
    """The standard suite's wall time on a trained model, and its accuracy in bf16 against fp32."""
    import tempfile

    from robustrain.evaluate import evaluate, fixed_subset
    from robustrain.runs import RunFolder
    from robustrain.train.load import load_run

    if args.model_run is None or RunFolder(args.model_run).results() is None:
        add_rows(args.out, [{"stage": "suite", "what": "standard suite", "not_measured":
                             f"no finished run to evaluate (--model-run {args.model_run})"}])
        return
    run = load_run(args.model_run)
    model = run.model.to(device)
    model_name = run.config.model["name"]
    suite = "quick" if args.tiny else "standard"  # the standard suite's AutoAttack takes minutes on a CPU
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        results = evaluate(model, run.test_set, suite, eps=run.config.threat.eps, norm=run.config.threat.norm,
                           out=Path(folder) / "suite.json", device=device, progress=False)
        seconds = time.perf_counter() - started
    add_rows(args.out, [{"stage": "suite", "what": f"{suite} suite {model_name} eval",
                         "run": str(args.model_run), "images": len(run.test_set), "seconds": seconds,
                         "summary": results["summary"]}])
    subset = fixed_subset(len(run.test_set), 8 if args.tiny else PRECISION_IMAGES, seed=0)
    x = run.test_set.images[subset].to(device).float().div_(255)
    accuracies = precision_accuracies(model.eval(), x, run.test_set.labels[subset].to(device))
    add_rows(args.out, [{"stage": "suite", "what": f"bf16 against fp32 {model_name} {len(subset)} images",
                         "accuracies": accuracies, "gap_points": precision_gap_points(accuracies)}])


def run_stage(args, device) -> None:
    {"steps": stage_steps, "compile": stage_compile, "profile": stage_profile, "corruptions": stage_corruptions,
     "trainer": stage_trainer, "corrupt_files": stage_corrupt_files, "suite": stage_suite}[args.stage](args, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-speed.json and gpu-profile.txt")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"),
                        help="CIFAR-10 folder (the corruptions stage reads its test images)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--tiny", action="store_true", help="a CPU-sized run of every stage (seconds)")
    parser.add_argument("--rounds", type=int, help="timed rounds per configuration (default 5; tiny 1)")
    parser.add_argument("--corruption-images", type=int, default=2000, help="test images each corruption makes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--commit", default="", help="the commit measured, recorded in the results")
    parser.add_argument("--model-run", type=Path, help="a trained run for the suite stage")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.tiny else 5)
    device = torch.device(args.device)
    if args.stage:
        run_stage(args, device)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"device": device_name(device), "torch": torch.__version__, "commit": args.commit,
              "command": "python bench/gpu.py " + " ".join(sys.argv[1:]), "rows": []}
    (args.out / "gpu-speed.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{record['device']}; torch {record['torch']}; commit {args.commit or 'unknown'}", flush=True)
    # Each stage's process gets the settings as parsed (not the command line with --stages cut out).
    forwarded = ["--out", str(args.out), "--data-root", args.data_root, "--rounds", str(args.rounds),
                 "--corruption-images", str(args.corruption_images), "--device", args.device,
                 "--commit", args.commit, *(["--tiny"] if args.tiny else []),
                 *(["--model-run", str(args.model_run)] if args.model_run else [])]
    for stage in args.stages:
        limit = LIMITS_S[stage] * (2 if args.tiny else 1)
        started = time.perf_counter()
        try:
            finished = subprocess.run([sys.executable, __file__, *forwarded, "--stage", stage],
                                      timeout=limit).returncode
        except subprocess.TimeoutExpired:
            finished = f"stopped at its {limit} s limit"
        print(f"stage {stage}: {time.perf_counter() - started:.1f} s, exit {finished}", flush=True)


if __name__ == "__main__":
    main()
