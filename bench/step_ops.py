"""What separates robustrain's PGD-10 training step from the plain loop's on the host: the operators
each dispatches (counted with a TorchDispatchMode, so the count does not depend on the device or
the batch), and the host time of a random start drawn on a CPU generator, as robustrain drew it on
every device until 831aeaf (the plain loop draws on the device; a GPU training step now does too,
`StepContext.noise`). Counted here, on a CPU, robustrain's step still draws on the host.

    python bench/step_ops.py [--model preact_resnet18 --batch 512 --rounds 7]

Both steps are those of bench/gpu.py's steps stage (`robustrain_step` and the plain loop's
`peer_step`), on the same model; the operators are counted on a batch of 2.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gpu import StepConfig, autocast_of, fresh_model, peer_step, robustrain_step, synthetic_batch


class OperatorCount(TorchDispatchMode):
    """How often each ATen operator is dispatched while the mode is on."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def step_operators(model_name: str) -> dict[str, Counter[str]]:
    """The operators one PGD-10 training step dispatches, by tool (after one warm-up step)."""
    device = torch.device("cpu")
    config = StepConfig("pgd10_at", model_name, 2, False, False, ("robustrain", "plain loop"))
    x, y = synthetic_batch(config.batch, device, config.channels_last)
    counts = {}
    for tool in config.tools:
        model = fresh_model(model_name, device, config.channels_last)
        autocast = autocast_of(device, config.bf16)
        step = (robustrain_step(config, model, x, y, autocast) if tool == "robustrain"
                else peer_step(tool, config, model, x, y, autocast, device))
        step()
        with OperatorCount() as counted:
            step()
        counts[tool] = counted.counts
    return counts


def random_start_host_ms(batch: int, rounds: int) -> float:
    """Median host time of drawing one batch's uniform random start on a CPU generator, in ms."""
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        torch.rand((batch, 3, 32, 32), generator=generator)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="preact_resnet18")
    parser.add_argument("--batch", type=int, default=512, help="batch of the random-start draw")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    counts = step_operators(args.model)
    ours, plain = counts["robustrain"], counts["plain loop"]
    print(f"{args.model}, one PGD-10 step: robustrain {sum(ours.values()):,} operators, "
          f"plain loop {sum(plain.values()):,}")
    for name in sorted(set(ours) | set(plain), key=lambda n: -abs(ours[n] - plain[n])):
        if ours[name] != plain[name]:
            print(f"  {name}: {ours[name] - plain[name]:+d} (robustrain {ours[name]}, plain loop {plain[name]})")
    print(f"random start of a batch of {args.batch} on a CPU generator: "
          f"{random_start_host_ms(args.batch, args.rounds):.1f} ms (median of {args.rounds}, {torch.get_num_threads()} "
          "threads)")


if __name__ == "__main__":
    main()
