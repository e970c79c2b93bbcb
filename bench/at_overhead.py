"""What a PGD-K adversarial-training step costs beyond the work it cannot avoid.

    overhead = t(one PGD-AT step of robustrain) / (t(K bare attack steps) + t(one bare training step))

A bare attack step is one forward and one input-gradient backward in eval mode plus the signed
step and projection, written here as plainly as possible (K of them in one loop, as an attack
runs them); a bare training step is forward, backward and an SGD update in train mode. The PGD-AT step is the
trainer's own path:
`method.step` (the attack with its random start, then the adversarial forward), backward and the
optimizer step. Goal (issue 9): at most 1.05. The three are timed one after another in each
round, so that a slow moment of a shared machine hits all of them; the table gives the median
over rounds of each round's ratio, with the range of the middle half.

    python bench/at_overhead.py [--model small_cnn --width 16 --batch 128 --steps 7 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from robustrain.methods import StepContext, Threat, create_method
from robustrain.models import create_model


def seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def bare_attack(model, x, y, eps: float, alpha: float, steps: int) -> torch.Tensor:
    model.eval()
    x_adv = x
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + alpha * grad.sign(), x - eps), x + eps).clamp_(0, 1)
    return x_adv


def bare_training_step(model, optimizer, x, y) -> None:
    model.train()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def robustrain_at_step(method, model, optimizer, x, y, ctx, autocast=nullcontext) -> None:
    """The trainer's step: the method's loss (under `autocast`), backward, optimizer update."""
    model.train()
    with autocast():
        out = method.step(model, x, y, ctx)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--width", type=int, default=16, help="small_cnn width")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[7, 10], help="PGD steps K")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds after one warm-up round")
    parser.add_argument("--channels-last", action="store_true", help="as the CPU configs train")
    args = parser.parse_args()
    torch.manual_seed(0)
    options = {"width": args.width} if args.model == "small_cnn" else {}
    model = create_model(args.model, 10, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), **options)
    x = torch.rand(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    eps, alpha = 8 / 255, 2 / 255
    print(f"{args.model} (width {args.width}), batch {args.batch}, {torch.get_num_threads()} threads, "
          f"channels_last {args.channels_last}, {args.repeats} rounds\n")
    print("| K | robustrain PGD-AT step (ms) | K bare attack steps + training step (ms) | overhead (middle half) "
          "| goal |")
    print("|---:|---:|---:|---:|---|")
    for steps in args.steps:
        method = create_method("pgd_at", {"steps": steps}, Threat(norm="linf", eps=eps))
        ctx = StepContext.seeded(0, x.device)
        ours, floors = [], []
        for round_ in range(args.repeats + 1):
            at_step = seconds(lambda: robustrain_at_step(method, model, optimizer, x, y, ctx))
            floor = seconds(lambda: bare_attack(model, x, y, eps, alpha, steps)) + \
                seconds(lambda: bare_training_step(model, optimizer, x, y))
            if round_:  # the first round warms up
                ours.append(at_step)
                floors.append(floor)
        ratios = sorted(a / b for a, b in zip(ours, floors))
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        ratio = statistics.median(ratios)
        print(f"| {steps} | {1e3 * statistics.median(ours):.1f} | {1e3 * statistics.median(floors):.1f} | "
              f"{ratio:.3f} ({quartiles[0]:.3f}-{quartiles[2]:.3f}) | "
              f"{'met' if ratio <= 1.05 else 'missed'} (<= 1.05) |")


if __name__ == "__main__":
    main()
