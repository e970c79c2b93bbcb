"""robustrain against the tools people use for the same work: a PGD-K adversarial-training step,
and PGD-20 / APGD-CE evaluation, on the same model, images, batch and device (issue 9).

Training rows time one PGD-K adversarial-training step (K attack steps of size 2/255 from a
uniform random start, the model in eval mode; then forward, backward and an SGD step on the
adversarial batch in train mode) done four ways:
  robustrain    the trainer's own path: `method.step` of the pgd_at method, backward, step;
  torchattacks  torchattacks.PGD for the attack, then the same update;
  ART           ART's ProjectedGradientDescentPyTorch on a PyTorchClassifier, then the same update
                (ART takes and returns NumPy arrays: the copies are part of using it);
  plain loop    the shortest correct PyTorch loop (bench/at_overhead.py's bare attack and step).
Evaluation rows attack a fixed batch of CIFAR-10 test images with PGD-20 (step 2/255, random
start) and APGD-CE (100 steps, one restart) with each tool and give images/s and the robust
accuracy each reached (the same work should reach about the same accuracy). There is no plain-loop
APGD: its step-size schedule and checkpoints are not a few lines.

Each round runs every variant once, in turn (starting one later each round), so that a slow moment
of a shared machine hits all of them; times are medians over rounds after one warm-up round,
synchronised on a GPU. The ratio is a peer's time over robustrain's in the same round, its median
over rounds with the middle half in brackets: above 1, robustrain is faster. Goals: at least 1.0x
on a CPU, at least 2x on a GPU.

Precision: on a GPU robustrain runs under bf16 autocast (its `--precision bf16`), the peers in
fp32 (none offers bf16), and the script checks on `--check-images` images that PGD-20 robust
accuracy under bf16 is within 0.3 points of fp32. On a CPU everything runs in fp32 (a CPU without
bf16 hardware runs bf16 about 2x slower), unless `--precision bf16` asks for the check there.
Memory: on a GPU, the peak allocated memory of each training variant's step.

    python bench/peers.py [--run runs/baselines/pgd_at | --model resnet20] [--channels-last]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from at_overhead import bare_attack, bare_training_step, robustrain_at_step
from robustrain.attacks import APGD, PGD
from robustrain.data import load_dataset
from robustrain.methods import StepContext, Threat, create_method
from robustrain.models import create_model
from robustrain.train.load import load_run

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"
EPS, ALPHA = 8 / 255, 2 / 255
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def bench_model(run: Path, name: str | None) -> tuple[torch.nn.Module, str]:
    """The registered model `name` (untrained), else the trained run, else an untrained small CNN."""
    if name is None and (run / "checkpoints" / "latest.json").is_file():
        shown = run.resolve().relative_to(ROOT) if run.resolve().is_relative_to(ROOT) else run
        return load_run(run).model.eval(), f"the trained run {shown}"
    described = f"an untrained {name}" if name else f"an untrained small_cnn ({run} was not found)"
    name = name or "small_cnn"
    torch.manual_seed(0)
    options = {"width": 16} if name == "small_cnn" else {}
    return create_model(name, 10, mean=MEAN, std=STD, **options).eval(), described


def fixed_test_images(root: str, count: int, device: torch.device,
                      channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random `count` CIFAR-10 test images in [0, 1] and their labels, on `device`."""
    test_set = load_dataset("cifar10", root, "test")
    keep = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(0))[:count]
    x = (test_set.images[keep].float() / 255).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, test_set.labels[keep].to(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture and cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def synchronized_seconds(work, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def interleaved_times(variants: dict, rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each variant in each of `rounds` rounds; a round runs every variant once, starting
    one later each round so that no variant always runs first or after the same one."""
    times = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(rounds + 1):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            seconds = synchronized_seconds(variants[name], device)
            if round_:  # round 0 warms up (kernels, allocator, numba in ART's imports)
                times[name].append(seconds)
    return times


def speed_ratio(times: dict[str, list[float]], peer: str) -> tuple[float, float, float]:
    """Median and quartiles over rounds of peer time / robustrain time within the same round: pairing
    the two in a round cancels the slow drifts of a shared machine."""
    ratios = sorted(theirs / ours for theirs, ours in zip(times[peer], times["robustrain"]))
    low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return statistics.median(ratios), low, high


def ratio_cell(times: dict[str, list[float]], name: str) -> str:
    if name == "robustrain":
        return "–"
    ratio, low, high = speed_ratio(times, name)
    return f"{ratio:.2f}x ({low:.2f}-{high:.2f})"


def art_classifier(model: torch.nn.Module, device: torch.device):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10,
                             clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")


def art_pgd(model, device, steps: int, batch: int):
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    attack = ProjectedGradientDescentPyTorch(art_classifier(model, device), norm=np.inf, eps=EPS, eps_step=ALPHA,
                                             max_iter=steps, num_random_init=1, batch_size=batch, verbose=False)
    return lambda x, y: torch.from_numpy(attack.generate(x.cpu().numpy(), y.cpu().numpy())).to(x.device)


def art_apgd(model, device, batch: int):
    from art.attacks.evasion import AutoProjectedGradientDescent

    attack = AutoProjectedGradientDescent(art_classifier(model, device), norm=np.inf, eps=EPS, eps_step=2 * EPS,
                                          max_iter=100, nb_random_init=1, batch_size=batch,
                                          loss_type="cross_entropy", verbose=False)
    return lambda x, y: torch.from_numpy(attack.generate(x.cpu().numpy(), y.cpu().numpy())).to(x.device)


def training_table(model, x, y, steps: int, rounds: int, device, autocast) -> list[str]:
    import torchattacks

    method = create_method("pgd_at", {"steps": steps, "step_size": ALPHA}, Threat(norm="linf", eps=EPS))
    ctx = StepContext.seeded(0, x.device)
    models = {name: copy.deepcopy(model) for name in ("robustrain", "torchattacks", "ART", "plain loop")}
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for name, m in models.items()}

    def ours():
        robustrain_at_step(method, models["robustrain"], optimizers["robustrain"], x, y, ctx, autocast)

    torchattacks_pgd = torchattacks.PGD(models["torchattacks"], eps=EPS, alpha=ALPHA, steps=steps, random_start=True)
    art_attack = art_pgd(models["ART"], device, steps, len(x))
    variants = {
        "robustrain": ours,
        "torchattacks": lambda: bare_training_step(models["torchattacks"], optimizers["torchattacks"],
                                                   torchattacks_pgd(x, y), y),
        "ART": lambda: bare_training_step(models["ART"], optimizers["ART"], art_attack(x, y), y),
        "plain loop": lambda: bare_training_step(models["plain loop"], optimizers["plain loop"],
                                     bare_attack(models["plain loop"], random_start(x), y, EPS, ALPHA, steps), y),
    }
    times = interleaved_times(variants, rounds, device)
    memory = peak_memory(variants, device)
    lines = [f"| tool | PGD-{steps} AT step (ms) | images/s | robustrain faster by (middle half) | peak memory (MiB) |",
             "|---|---:|---:|---:|---:|"]
    for name, values in times.items():
        seconds = statistics.median(values)
        lines.append(f"| {name} | {1e3 * seconds:.1f} | {len(x) / seconds:.0f} | {ratio_cell(times, name)} | "
                     f"{memory[name]} |")
    return lines + ["", goal_line({f"PGD-{steps} AT, {name}": speed_ratio(times, name)
                                   for name in times if name != "robustrain"}, device)]


def goal_line(ratios: dict[str, tuple[float, float, float]], device: torch.device) -> str:
    """Whether robustrain is at least as fast as every peer (CPU) or twice as fast (GPU): met, missed,
    or not decided where the middle half of the per-round ratios spans the goal."""
    goal = 2.0 if device.type == "cuda" else 1.0
    verdicts = {"met": [], "within the noise of the goal": [], "missed": []}
    for name, (ratio, low, high) in ratios.items():
        verdict = "met" if low >= goal else "missed" if high < goal else "within the noise of the goal"
        verdicts[verdict].append(f"{name} {ratio:.2f}x")
    listed = "; ".join(f"{verdict}: {', '.join(names)}" for verdict, names in verdicts.items() if names)
    return f"Goal (robustrain at least {goal:.0f}x as fast on {'a GPU' if goal > 1 else 'a CPU'}): {listed}."


def random_start(x: torch.Tensor) -> torch.Tensor:
    """x plus uniform noise in the eps ball, inside [0, 1]: where the plain loop's PGD starts."""
    return (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp_(0, 1)


def peak_memory(variants: dict, device: torch.device) -> dict[str, str]:
    """Peak allocated GPU memory of one run of each variant; on a CPU there is no per-step figure."""
    if device.type != "cuda":
        return {name: "–" for name in variants}
    peaks = {}
    for name, work in variants.items():
        torch.cuda.reset_peak_memory_stats(device)
        synchronized_seconds(work, device)
        peaks[name] = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}"
    return peaks


def robust_accuracy(model, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def evaluation_table(model, x, y, rounds: int, device, autocast) -> list[str]:
    """PGD-20 and APGD-CE with each tool: images/s, ratio to robustrain, robust accuracy reached."""
    import torchattacks

    def seeded(attack):
        return lambda x, y: attack(model, x, y, torch.Generator().manual_seed(0))

    def under(autocast_, attack):
        def run(x, y):
            with autocast_():
                return attack(x, y)
        return run

    attacks = {
        "PGD-20": {
            "robustrain": under(autocast, seeded(PGD(EPS, ALPHA, 20))),
            "torchattacks": torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=20, random_start=True),
            "ART": art_pgd(model, device, 20, len(x)),
            "plain loop": lambda x, y: bare_attack(model, random_start(x), y, EPS, ALPHA, 20),
        },
        "APGD-CE": {
            "robustrain": under(autocast, seeded(APGD(EPS, 100, loss="ce"))),
            "torchattacks": torchattacks.APGD(model, eps=EPS, steps=100, loss="ce", n_restarts=1, seed=0),
            "ART": art_apgd(model, device, len(x)),
        },
    }
    lines = ["| attack | tool | images/s | robustrain faster by (middle half) | robust accuracy (%) |",
             "|---|---|---:|---:|---:|"]
    ratios = {}
    for attack_name, tools in attacks.items():
        outputs = {}

        def keeping_output(name, attack):
            def run():
                outputs[name] = attack(x, y)
            return run

        times = interleaved_times({name: keeping_output(name, attack) for name, attack in tools.items()},
                                  rounds, device)
        for name, values in times.items():
            lines.append(f"| {attack_name} | {name} | {len(x) / statistics.median(values):.0f} | "
                         f"{ratio_cell(times, name)} | {100 * robust_accuracy(model, outputs[name], y):.1f} |")
            if name != "robustrain":
                ratios[f"{attack_name}, {name}"] = speed_ratio(times, name)
    return lines + ["", goal_line(ratios, device)]


def precision_accuracies(model, x, y) -> dict[str, dict[str, float]]:
    """Clean and PGD-20 accuracy of `model` on the same images in fp32 and under bf16 autocast (the
    attack and the final classification both in the precision named), e.g. {"bf16": {"clean": 0.8, "pgd20": 0.4}}."""
    attack = PGD(EPS, ALPHA, 20)
    accuracies = {}
    for label, context in (("fp32", nullcontext), ("bf16", lambda: torch.autocast(x.device.type, torch.bfloat16))):
        with context():
            x_adv = torch.cat([attack(model, xb, yb, torch.Generator().manual_seed(0))
                               for xb, yb in zip(x.split(500), y.split(500))])
            accuracies[label] = {"clean": robust_accuracy(model, x, y), "pgd20": robust_accuracy(model, x_adv, y)}
    return accuracies


def precision_gap_points(accuracies: dict[str, dict[str, float]]) -> float:
    """The larger of the clean and PGD-20 differences between bf16 and fp32, in points."""
    return 100 * max(abs(accuracies["bf16"][k] - accuracies["fp32"][k]) for k in ("clean", "pgd20"))


def bf16_check(model, x, y) -> list[str]:
    """The bf16 goal's line: clean and PGD-20 accuracy in fp32 and under bf16 autocast."""
    accuracies = precision_accuracies(model, x, y)
    gap = precision_gap_points(accuracies)
    return [f"On {len(x)} images, clean / PGD-20 accuracy: fp32 {100 * accuracies['fp32']['clean']:.2f}% / "
            f"{100 * accuracies['fp32']['pgd20']:.2f}%, bf16 {100 * accuracies['bf16']['clean']:.2f}% / "
            f"{100 * accuracies['bf16']['pgd20']:.2f}%: largest gap {gap:.2f} points, goal <= 0.3: "
            f"{'met' if gap <= 0.3 else 'missed'}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(ROOT / "runs/baselines/pgd_at"), help="trained run whose model is used")
    parser.add_argument("--model", help="time this registered model (untrained) instead of the run's")
    parser.add_argument("--data-root", default=str(SHARED_CIFAR), help="CIFAR-10 folder (default ../shared/data)")
    parser.add_argument("--batch", type=int, default=128, help="images per training step and per attack call")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps K of the training step")
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds after one warm-up round")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="robustrain's precision; auto: bf16 on a GPU, fp32 on a CPU")
    parser.add_argument("--check-images", type=int, default=1000, help="images of the bf16 accuracy check")
    parser.add_argument("--channels-last", action="store_true", help="as the CPU configs train")
    parser.add_argument("--out", metavar="FILE", help="also write the tables, with this command, to a Markdown file")
    args = parser.parse_args()
    device = torch.device(args.device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, torch.bfloat16)) if bf16 else nullcontext
    model, described = bench_model(Path(args.run), args.model)
    model = model.to(device, memory_format=torch.channels_last if args.channels_last else torch.preserve_format)
    x, y = fixed_test_images(args.data_root, max(args.batch, args.check_images if bf16 else 0), device,
                             args.channels_last)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    name = device_name(device)
    header = (f"Commit {commit or 'unknown'}; torch {torch.__version__}; {name}; {torch.get_num_threads()} threads; "
              f"{described}; batch {args.batch}; channels_last {args.channels_last}; robustrain in "
              f"{'bf16 autocast' if bf16 else 'fp32'}, the peers in fp32; {args.rounds} rounds.")
    print(header + "\n")
    training = training_table(model, x[:args.batch], y[:args.batch], args.steps, args.rounds, device, autocast)
    print("\n".join(training) + "\n")
    evaluation = evaluation_table(model, x[:args.batch], y[:args.batch], args.rounds, device, autocast)
    print("\n".join(evaluation) + "\n")
    check = bf16_check(model, x[:args.check_images], y[:args.check_images]) if bf16 else \
        ["bf16 check not run: robustrain ran in fp32 (pass --precision bf16 to run it on this device)."]
    print("\n".join(check))
    if args.out:
        command = "python bench/peers.py " + " ".join(sys.argv[1:])
        page = ["# robustrain against torchattacks, ART and a plain PyTorch loop", "", f"Made by `{command}`.", "",
                header, "", f"## One PGD-{args.steps} adversarial-training step", "", *training, "",
                "## Evaluation attacks, eps 8/255", "", *evaluation, "", *check, ""]
        Path(args.out).write_text("\n".join(page))


if __name__ == "__main__":
    main()
