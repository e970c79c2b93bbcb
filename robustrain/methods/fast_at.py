"""Fast adversarial training (Wong, Rice & Kolter, 2020): FGSM with a random start.

    d ~ U(-eps, eps);  x' = x + Proj_eps(d + alpha * sign(grad CE(f(x + d), y)));  min CE(f(x'), y)

with alpha = 1.25 eps, the step the paper found not to cause catastrophic overfitting.
Pair it with the `onecycle` schedule peaking half-way, as the official `train_fgsm.py` does
(torch's CyclicLR, which also moves the momentum from 0.9 to 0.8 at the peak:
`schedule.momentum_at_peak: 0.8`). Like the official code, the FGSM step runs with the model
in train mode by default (BatchNorm on batch statistics, its running statistics updated by the
attack pass too); `bn_mode: eval` attacks the running statistics instead. On an H100 neither
choice moved clean accuracy by more than seed noise (docs/results/fast-at-departures.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..attacks import FGSM
from ..errors import ConfigError
from .base import METHODS, Method, StepContext, StepOutput


@dataclass(frozen=True)
class FastATOptions:
    """bn_mode: BatchNorm mode while the FGSM step runs, "train" (the official code) or "eval"."""

    alpha_factor: float = 1.25
    bn_mode: Literal["eval", "train"] = "train"

    def __post_init__(self):
        if self.alpha_factor <= 0:
            raise ConfigError(f"method.alpha_factor must be positive, got {self.alpha_factor}.")


@METHODS.register()
class FastAT(Method):
    name = "fast_at"
    Options = FastATOptions

    def __init__(self, options: FastATOptions, threat):
        super().__init__(options, threat)
        if threat.norm != "linf":
            raise ConfigError(f"fast_at is defined for the linf threat, got {threat.norm!r}.")
        self.attack = FGSM(threat.eps, random_start=True, alpha=options.alpha_factor * threat.eps,
                           model_mode=options.bn_mode)

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        x_adv = self.attack(model, x, y, ctx.noise)
        logits = model(x_adv)
        return StepOutput(ctx.cross_entropy(logits, y), logits)
