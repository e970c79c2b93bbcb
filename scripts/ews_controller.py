"""EWS's search alone: does the controller, trained on a frozen network, find subnets weaker than
random subnets of the same width, and after how many updates? Writes docs/results/ews-controller.md
and docs/results/ews-controller.json.

    python scripts/ews_controller.py            # from the project root, in the project's venv
                                                # (about an hour here beside other runs)
    python scripts/ews_controller.py --tiny     # a few minutes through every stage (numbers not kept)
    python scripts/ews_controller.py --render   # the page again from docs/results/ews-controller.json

The frozen network is the standard ResNet-20 of the EWS study (configs/cpu/ews_standard_resnet20.yaml,
seed 0, trained into runs/ews-controller/standard first if missing). For each controller learning rate
and seed, an EWS method (base standard, subnet width 0.7, the official controller settings otherwise)
is attached to it and its controller alone is updated, exactly as in training (`EWS.update_controller`:
REINFORCE with reward -(subnet accuracy on a batch of 128 training images), entropy bonus, moving
baseline), while the network stays fixed. After 0, 47 (what the 3-epoch CPU run gave it), 470 and 1,500
updates, at the official learning rate and at 10 times it, subnets sampled from the controller and
uniformly random subnets of the same width are tested on the same fixed test images, with batch
statistics as in the reward.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass

import torch

from robustrain.results import RunResults
from robustrain.study import PROJECT, ensure_run, PairedDifference, provenance, write_study

DOC, SOURCE = PROJECT / "docs/results/ews-controller.md", PROJECT / "docs/results/ews-controller.json"
RUN = "runs/ews-controller/standard"
CONFIG = "configs/cpu/ews_standard_resnet20.yaml"
WIDTH = 0.7  # EWS's subnet width: the share of each block's middle-convolution inputs a subnet keeps


@dataclass(frozen=True)
class Plan:
    """What the check measures: controller learning rates, seeds, the update counts at which subnets
    are tested, subnets per test, test images, reward batch size."""

    learning_rates: tuple[float, ...] = (3e-4, 3e-3)
    seeds: tuple[int, ...] = (0, 1, 2)
    checkpoints: tuple[int, ...] = (0, 47, 470, 1500)
    subnets: int = 16
    test_images: int = 512
    batch_size: int = 128


TINY = Plan(learning_rates=(3e-4, 3e-3), seeds=(0, 1), checkpoints=(0, 3, 6), subnets=2, test_images=128)


def measure(plan: Plan) -> dict:
    from robustrain.data import load_dataset
    from robustrain.methods import StepContext, Threat, create_method
    from robustrain.methods.ews import channel_masks, random_picks, subnet_accuracy
    from robustrain.train.load import load_run

    run = load_run(PROJECT / RUN)
    model = run.model.train()  # batch statistics, as in EWS's subnet passes; nothing is updated
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    test_rows = torch.randperm(len(run.test_set.labels), generator=torch.Generator().manual_seed(0))[:plan.test_images]
    test_images, test_labels = run.test_set.images[test_rows], run.test_set.labels[test_rows]
    train_set = load_dataset("cifar10", PROJECT / "../shared/data/cifar10-jpeg", "train")
    # The subnet widths as EWS computes them, from a method that only samples random subnets.
    widths = create_method("ews", {"base": {"name": "standard"}, "subnet_width": WIDTH, "subnets": "random"}, Threat())
    widths.attach(model)
    channels, keep = widths.channels, widths.keep

    def accuracies(picks_of) -> list[float]:
        return [subnet_accuracy(model, channel_masks(channels, picks_of(i), torch.device("cpu")), test_images,
                                test_labels, plan.batch_size) for i in range(plan.subnets)]

    full = subnet_accuracy(model, None, test_images, test_labels, plan.batch_size)
    random_generator = torch.Generator().manual_seed(1000)
    random_subnets = accuracies(lambda i: random_picks(channels, keep, random_generator))
    curves = {}
    for lr in plan.learning_rates:
        for seed in plan.seeds:
            torch.manual_seed(seed)
            method = create_method("ews", {"base": {"name": "standard"}, "subnet_width": WIDTH, "controller_lr": lr},
                                   Threat())
            method.attach(model)
            ctx = StepContext(torch.Generator().manual_seed(seed))
            batches = torch.Generator().manual_seed(100 + seed)
            sampler = torch.Generator().manual_seed(200 + seed)
            points, done, rewards = [], 0, []
            for checkpoint in plan.checkpoints:
                for _ in range(checkpoint - done):
                    rows = torch.randint(len(train_set.labels), (plan.batch_size,), generator=batches)
                    method.update_controller(model, train_set.images[rows].float() / 255, train_set.labels[rows], ctx)
                    rewards.append(-float(method.last_reward))
                done = checkpoint
                with torch.no_grad():
                    found = accuracies(lambda i: method.controller(sampler)[0])
                points.append({"updates": checkpoint, "subnet_acc": found,
                               "reward_acc_last_50": statistics.fmean(rewards[-50:]) if rewards else None})
                print(f"lr {lr:g} seed {seed} updates {checkpoint}: controller subnets "
                      f"{100 * statistics.fmean(found):.2f}%, random {100 * statistics.fmean(random_subnets):.2f}%",
                      flush=True)
            curves[f"{lr:g}/{seed}"] = {"controller_lr": lr, "seed": seed, "points": points}
    return {"full_acc": full, "random_subnet_acc": random_subnets, "curves": curves}


def summarise(plan: Plan, measured: dict, start: RunResults) -> dict:
    random_mean = statistics.fmean(measured["random_subnet_acc"])
    table = []
    for lr in plan.learning_rates:
        for updates in plan.checkpoints:
            gaps = [statistics.fmean(p["subnet_acc"]) - random_mean
                    for c in measured["curves"].values() if c["controller_lr"] == lr
                    for p in c["points"] if p["updates"] == updates]
            table.append({"controller_lr": lr, "updates": updates, "gap_per_seed": gaps,
                          "gap_mean": statistics.fmean(gaps),
                          "gap_sd": statistics.stdev(gaps) if len(gaps) > 1 else math.nan})
    return {
        "study": "EWS controller alone on a frozen standard ResNet-20",
        "settings": {"network": f"{RUN} ({CONFIG}, seed 0)", "subnet_width": WIDTH,
                     "controller": "hidden 100, Adam betas (0.5, 0.999), entropy 0.005, baseline decay 0.99 (reward)",
                     "reward": f"-(subnet accuracy on {plan.batch_size} random un-augmented training images)",
                     **{k: list(v) if isinstance(v, tuple) else v for k, v in plan.__dict__.items()}},
        "protocols": {"subnet_acc": f"accuracy on a fixed random {plan.test_images} CIFAR-10 test images, batch "
                                    f"statistics in batches of {plan.batch_size}, {plan.subnets} subnets per point",
                      "gap": "mean accuracy of controller subnets minus that of uniformly random subnets of the "
                             "same width (the same random subnets for every point); negative: the controller "
                             "finds weaker subnets"},
        "network_clean_acc_all_test_images": start.model.clean_acc,
        "measured": measured, "gaps": table, "provenance": provenance(),
    }


def render(study: dict) -> str:
    measured, plan = study["measured"], study["settings"]
    random_acc = measured["random_subnet_acc"]
    spread = statistics.stdev(random_acc) if len(random_acc) > 1 else math.nan
    lines = [
        "# EWS's controller alone, on a frozen ResNet-20",
        "",
        "Produced by `python scripts/ews_controller.py` (from the project root, in the project's virtualenv;",
        "the numbers are also in `docs/results/ews-controller.json`). It trains the network first if missing:",
        "",
        f"    robustrain train --config {CONFIG} --out {RUN}",
        "",
        "**Question.** EWS distils the full network into the weak subnets its controller finds. The CPU EWS",
        "runs (`ews-first-design.md`) gave the controller 47 updates at Adam 3e-4. Does the controller find subnets",
        "weaker than random ones of the same width at all, and after how many updates?",
        "",
        "**Design.** The controller is trained alone, exactly as in EWS training (`EWS.update_controller`),",
        "on a fixed standard ResNet-20 (3 epochs on 20,000 images, "
        f"{100 * study['network_clean_acc_all_test_images']:.2f}% clean on all test images).",
        f"At each point, {plan['subnets']} subnets sampled from the controller and {plan['subnets']} uniformly "
        f"random subnets (width {plan['subnet_width']:g}: {100 * plan['subnet_width']:.0f}% of each block's "
        "middle-convolution inputs kept) are tested on the "
        f"same fixed {plan['test_images']} test images with batch statistics (as the reward sees them).",
        f"Seeds {', '.join(map(str, plan['seeds']))} per learning rate (the controller's initialisation, "
        "its sampling and the reward batches).",
        "",
        study["provenance"],
        "",
        f"Full network on these images: {100 * measured['full_acc']:.2f}%. Random subnets: "
        f"{100 * statistics.fmean(random_acc):.2f}% (sd over subnets {100 * spread:.2f} points).",
        "",
        "| controller lr | updates | controller subnets: mean acc per seed | gap to random (mean ± sd over seeds) |",
        "|---:|---:|---|---:|",
    ]
    for row in study["gaps"]:
        per_seed = [statistics.fmean(p["subnet_acc"]) for c in measured["curves"].values()
                    if c["controller_lr"] == row["controller_lr"]
                    for p in c["points"] if p["updates"] == row["updates"]]
        lines.append(f"| {row['controller_lr']:g} | {row['updates']} | "
                     + ", ".join(f"{100 * a:.2f}" for a in per_seed)
                     + f" | {100 * row['gap_mean']:+.2f} ± {100 * row['gap_sd']:.2f} |")
    lines += ["", "Accuracies in %; gap in points (negative: weaker than random subnets).", "", "## Reading", ""]
    last = max(plan["checkpoints"])
    random_level = statistics.fmean(random_acc)
    for lr in plan["learning_rates"]:
        row = next(r for r in study["gaps"] if r["controller_lr"] == lr and r["updates"] == last)
        gap = PairedDifference(tuple(row["gap_per_seed"]))
        word = {"below": "weaker than random subnets, beyond the seed-to-seed noise",
                "above": "stronger than random subnets, beyond the seed-to-seed noise",
                "within the noise": "not distinguishable from random subnets"}[gap.verdict]
        lines.append(f"- Controller lr {lr:g}, after {last} updates: its subnets are {word} (gap "
                     f"{100 * gap.mean:+.2f} points, 95% interval ±{100 * gap.half_width:.2f} over "
                     f"{len(gap.differences)} seeds, each the mean over {plan['subnets']} subnets; one subnet's "
                     f"binomial standard error on these images is about "
                     f"{100 * (random_level * (1 - random_level) / plan['test_images']) ** 0.5:.1f} points).")
    rewards = {lr: [c["points"][-1]["reward_acc_last_50"] for c in measured["curves"].values()
                    if c["controller_lr"] == lr] for lr in plan["learning_rates"]}
    lines.append("- The reward the controller sees (subnet accuracy on its training batches, mean of the last 50 "
                 "updates): " + "; ".join(f"lr {lr:g}: " + ", ".join(f"{100 * r:.1f}%" for r in values)
                                          for lr, values in rewards.items()) + ".")
    official = next((r for r in study["gaps"] if r["controller_lr"] == 3e-4 and r["updates"] == 47), None)
    if official is not None and PairedDifference(tuple(official["gap_per_seed"])).verdict != "below":
        lines += ["",
                  "What this means for the first CPU EWS runs (`ews-first-design.md`): after the 47 controller",
                  "updates they gave it at the official learning rate, the controller's subnets were no weaker than",
                  "random ones, so those",
                  "runs measured distillation into random subnets (what `subnets: random` now does on purpose)",
                  "rather than EWS. An EWS study that can answer its question needs a controller shown to find",
                  "weaker subnets at the settings it trains with."]
    return "\n".join(lines) + "\n"


def main() -> None:
    if "--render" in sys.argv[1:]:
        DOC.write_text(render(json.loads(SOURCE.read_text())))
        print(f"wrote {DOC.relative_to(PROJECT)}")
        return
    tiny = "--tiny" in sys.argv[1:]
    plan = TINY if tiny else Plan()
    start = ensure_run(CONFIG, RUN)
    study = summarise(plan, measure(plan), start)
    if tiny:
        print(render(study))
        return
    write_study(study, render, DOC, SOURCE)


if __name__ == "__main__":
    main()
