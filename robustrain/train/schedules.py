"""Learning-rate schedules as pure functions of training progress (in epochs, fractional).

The learning rate at step s of an epoch of S steps is base_lr * factor(epoch + s / S),
so a schedule needs no state of its own: resuming at any step reproduces it exactly.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from ..registry import Registry


RiseShape = Literal["linear", "cosine"]
DecayShape = Literal["linear", "cosine", "exponential"]
PEAK_FRACTION = {"onecycle": 0.4, "slow_start_fast_decay": 0.7}
# torch.optim.lr_scheduler.OneCycleLR's defaults
TORCH_PCT_START, TORCH_DIV_FACTOR, TORCH_FINAL_DIV_FACTOR = 0.3, 25.0, 1e4


@dataclass(frozen=True)
class ScheduleConfig:
    """name:
      constant   factor 1
      multistep  factor gamma**k after the k-th of `milestones` (epochs)
      cosine     from 1 down to `final_factor` along a half cosine
      onecycle   linear rise from 0 to 1 at `peak_fraction` (default 0.4) of training, then
                 linear fall to `final_factor` (Smith; the cyclic schedule of Wong et al.'s fast AT)
      slow_start_fast_decay
                 Jeddi et al.'s fine-tuning schedule: a rise from `start_factor` to 1 over
                 the first `peak_fraction` (default 0.7) of training, shaped `rise_shape`,
                 then a fall to `final_factor`, shaped `decay_shape`, that must be faster on
                 average than the rise (the paper's curve itself is not known to us; these
                 defaults are our reading of "slow start, fast decay")
      piecewise  linear through `points`, pairs (epoch, factor), constant outside them
      torch_onecycle
                 torch's OneCycleLR with its defaults, stepped once per epoch (as code that calls
                 `scheduler.step()` after each epoch, e.g. the FastAT benchmark, has it): constant
                 within an epoch; a half-cosine from 1/25 up to 1 at step 0.3 x epochs - 1, then
                 down to 1/25 x 1e-4 at the last epoch
    warmup_epochs: a linear ramp from 0 multiplied onto any of these.
    momentum_at_peak: SGD momentum moves opposite to the learning rate, linearly from
      optim.momentum at factor 0 to this value at factor 1, as torch's CyclicLR does by default
      (cycle_momentum: 0.9 down to 0.8), and so the official fast AT code; unset: constant.
      Under torch_onecycle it follows OneCycleLR's own momentum cycle: the same half-cosines
      from optim.momentum (OneCycleLR's max_momentum, 0.95 by default) to this value (its
      base_momentum, 0.85) and back.
    """

    name: str = "multistep"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    final_factor: float = 0.0
    peak_fraction: float | None = None
    start_factor: float = 0.0
    rise_shape: RiseShape = "linear"
    decay_shape: DecayShape = "linear"
    points: tuple[tuple[float, float], ...] = ()
    momentum_at_peak: float | None = None

    @property
    def peak(self) -> float:
        """Where a rise-then-fall schedule peaks, as a fraction of training."""
        return self.peak_fraction if self.peak_fraction is not None else PEAK_FRACTION.get(self.name, 0.5)

    def __post_init__(self):
        SCHEDULES.get(self.name)
        if list(self.milestones) != sorted(self.milestones) or any(m < 0 for m in self.milestones):
            raise ConfigError(f"schedule.milestones must be non-negative and increasing, got {list(self.milestones)}.")
        if self.warmup_epochs < 0:
            raise ConfigError(f"schedule.warmup_epochs must be non-negative, got {self.warmup_epochs}.")
        if self.peak_fraction is not None and not 0 < self.peak_fraction < 1:
            raise ConfigError(f"schedule.peak_fraction must lie strictly between 0 and 1, got {self.peak_fraction}.")
        if not 0 <= self.start_factor < 1 or not 0 <= self.final_factor < 1:
            raise ConfigError(f"schedule.start_factor and final_factor must lie in [0, 1), got "
                              f"{self.start_factor} and {self.final_factor}.")
        if self.momentum_at_peak is not None and not 0 <= self.momentum_at_peak < 1:
            raise ConfigError(f"schedule.momentum_at_peak must lie in [0, 1), got {self.momentum_at_peak}.")
        if self.name == "slow_start_fast_decay":
            p = self.peak
            rise_rate, fall_rate = (1 - self.start_factor) / p, (1 - self.final_factor) / (1 - p)
            if fall_rate <= rise_rate:
                raise ConfigError(f"schedule.peak_fraction {p} makes the decay (rate {fall_rate:.3g} per run) no "
                                  f"faster than the rise ({rise_rate:.3g}); a slow start, fast decay needs a larger "
                                  f"peak_fraction.")
            if self.decay_shape == "exponential" and self.final_factor <= 0:
                raise ConfigError("schedule.decay_shape exponential needs a positive final_factor.")
        if self.name == "piecewise":
            epochs = [p[0] for p in self.points]
            if len(self.points) < 2 or epochs != sorted(epochs):
                raise ConfigError(f"schedule.points needs at least two (epoch, factor) pairs in increasing epoch "
                                  f"order, got {[list(p) for p in self.points]}.")


def lr_factor(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    """The multiplier of the base learning rate at progress t (epochs) of a run of total_epochs."""
    factor = SCHEDULES.get(config.name)(config, total_epochs, t)
    if config.warmup_epochs > 0:
        factor *= min(1.0, t / config.warmup_epochs)
    return factor


def momentum_at(config: ScheduleConfig, momentum: float, total_epochs: float, t: float) -> float:
    """The SGD momentum at progress t (epochs) of a run of total_epochs (see momentum_at_peak)."""
    if config.momentum_at_peak is None:
        return momentum
    if config.name == "torch_onecycle":
        rising, pct = _torch_onecycle_phase(total_epochs, t)
        start, end = (momentum, config.momentum_at_peak) if rising else (config.momentum_at_peak, momentum)
        return _cosine_anneal(start, end, pct)
    return momentum + (config.momentum_at_peak - momentum) * lr_factor(config, total_epochs, t)


SCHEDULES: Registry[Callable[[ScheduleConfig, float, float], float]] = Registry("schedule")
"""Every schedule, by name: (its config, total epochs, progress t in epochs) -> lr factor."""


@SCHEDULES.register("constant")
def _constant(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    return 1.0


@SCHEDULES.register("multistep")
def _multistep(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    return config.gamma ** bisect.bisect_right(config.milestones, t)


@SCHEDULES.register("cosine")
def _cosine(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    return config.final_factor + (1 - config.final_factor) * 0.5 * (1 + math.cos(math.pi * t / total_epochs))


@SCHEDULES.register("onecycle")
def _onecycle(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    return _rise_then_fall(t / total_epochs, config.peak, 0.0, config.final_factor, "linear", "linear")


@SCHEDULES.register("slow_start_fast_decay")
def _slow_start_fast_decay(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    return _rise_then_fall(t / total_epochs, config.peak, config.start_factor, config.final_factor,
                           config.rise_shape, config.decay_shape)


@SCHEDULES.register("piecewise")
def _piecewise(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    return _interp(t, config.points)


@SCHEDULES.register("torch_onecycle")
def _torch_onecycle(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    rising, pct = _torch_onecycle_phase(total_epochs, t)
    initial = 1 / TORCH_DIV_FACTOR
    return _cosine_anneal(initial, 1.0, pct) if rising else _cosine_anneal(1.0, initial / TORCH_FINAL_DIV_FACTOR, pct)


def _torch_onecycle_phase(total_epochs: float, t: float) -> tuple[bool, float]:
    """(rising, fraction of the phase done) of OneCycleLR with total_steps = the epochs, at the
    step taken before epoch floor(t): its two phases end at steps 0.3 x total - 1 and total - 1."""
    steps = max(round(total_epochs), 1)
    step = min(max(math.floor(t), 0), steps - 1)
    peak = float(TORCH_PCT_START * steps) - 1
    if step <= peak:
        return True, step / peak
    return False, (step - peak) / (steps - 1 - peak)


def _cosine_anneal(start: float, end: float, pct: float) -> float:
    """OneCycleLR's anneal_strategy "cos"."""
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


def _rise_then_fall(u: float, peak: float, start: float, final: float, rise: RiseShape, decay: DecayShape) -> float:
    """From `start` up to 1 at fraction `peak` of training, then down to `final` at its end."""
    u = min(max(u, 0.0), 1.0)
    if u <= peak:
        v = u / peak
        ramp = v if rise == "linear" else 0.5 * (1 - math.cos(math.pi * v))
        return start + (1 - start) * ramp
    v = (u - peak) / (1 - peak)
    if decay == "exponential":
        return final ** v
    ramp = v if decay == "linear" else 0.5 * (1 - math.cos(math.pi * v))
    return 1 + (final - 1) * ramp


def _interp(t: float, points) -> float:
    xs = [p[0] for p in points]
    if t <= xs[0]:
        return points[0][1]
    if t >= xs[-1]:
        return points[-1][1]
    i = bisect.bisect_right(xs, t)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (t - x0) / (x1 - x0)


def learning_rate_curve(config, samples: int = 400) -> tuple[list[float], list[float]]:
    """(epochs, learning rates) of a RunConfig's schedule at `samples` + 1 evenly spaced points."""
    epochs = [config.epochs * i / samples for i in range(samples + 1)]
    return epochs, [config.optim.lr * lr_factor(config.schedule, config.epochs, t) for t in epochs]
