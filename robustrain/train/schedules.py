"""Learning-rate schedules as pure functions of training progress (in epochs, fractional).

The learning rate at step s of an epoch of S steps is base_lr * factor(epoch + s / S),
so a schedule needs no state of its own: resuming at any step reproduces it exactly.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError


@dataclass(frozen=True)
class ScheduleConfig:
    """name:
      constant   factor 1
      multistep  factor gamma**k after the k-th of `milestones` (epochs)
      cosine     from 1 down to `final_factor` along a half cosine
      onecycle   linear rise from 0 to 1 at `peak_fraction` of training, then linear fall
                 to `final_factor` (Smith; the cyclic schedule of Wong et al.'s fast AT)
      piecewise  linear through `points`, pairs (epoch, factor), constant outside them
    warmup_epochs: a linear ramp from 0 multiplied onto any of these.
    """

    name: Literal["constant", "multistep", "cosine", "onecycle", "piecewise"] = "multistep"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    final_factor: float = 0.0
    peak_fraction: float = 0.4
    points: tuple[tuple[float, float], ...] = ()

    def __post_init__(self):
        if list(self.milestones) != sorted(self.milestones) or any(m < 0 for m in self.milestones):
            raise ConfigError(f"schedule.milestones must be non-negative and increasing, got {list(self.milestones)}.")
        if self.warmup_epochs < 0:
            raise ConfigError(f"schedule.warmup_epochs must be non-negative, got {self.warmup_epochs}.")
        if not 0 < self.peak_fraction < 1:
            raise ConfigError(f"schedule.peak_fraction must lie strictly between 0 and 1, got {self.peak_fraction}.")
        if self.name == "piecewise":
            epochs = [p[0] for p in self.points]
            if len(self.points) < 2 or epochs != sorted(epochs):
                raise ConfigError(f"schedule.points needs at least two (epoch, factor) pairs in increasing epoch "
                                  f"order, got {[list(p) for p in self.points]}.")


def lr_factor(config: ScheduleConfig, total_epochs: float, t: float) -> float:
    """The multiplier of the base learning rate at progress t (epochs) of a run of total_epochs."""
    if config.name == "constant":
        factor = 1.0
    elif config.name == "multistep":
        factor = config.gamma ** bisect.bisect_right(config.milestones, t)
    elif config.name == "cosine":
        factor = config.final_factor + (1 - config.final_factor) * 0.5 * (1 + math.cos(math.pi * t / total_epochs))
    elif config.name == "onecycle":
        peak = config.peak_fraction * total_epochs
        factor = _interp(t, ((0.0, 0.0), (peak, 1.0), (total_epochs, config.final_factor)))
    else:
        factor = _interp(t, config.points)
    if config.warmup_epochs > 0:
        factor *= min(1.0, t / config.warmup_epochs)
    return factor


def _interp(t: float, points) -> float:
    xs = [p[0] for p in points]
    if t <= xs[0]:
        return points[0][1]
    if t >= xs[-1]:
        return points[-1][1]
    i = bisect.bisect_right(xs, t)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (t - x0) / (x1 - x0)
