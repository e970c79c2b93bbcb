"""PGD adversarial training (Madry et al., 2018), with an optional clean term.

    min_theta E[ (1 - lam) * CE(f(x), y) + lam * max_{||d|| <= eps} CE(f(x + d), y) ]

lam = 1 (`adv_weight`, the default) is Madry's objective; 0 < lam < 1 gives the
dedicated PGD-AT(lam) models OAT is compared against. The inner maximisation is PGD
with `steps` steps of `step_size` (eps/4 when unset: 2/255 at 8/255).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..attacks import PGD
from ..errors import ConfigError
from .base import METHODS, Method, StepContext, StepOutput


@dataclass(frozen=True)
class PGDATOptions:
    """bn_mode: BatchNorm mode while the attack runs: "eval" (running statistics, as the
    OAT code) or "train" (batch statistics, updating the running ones, as Rice et al.
    and the EWS code)."""

    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    bn_mode: Literal["eval", "train"] = "eval"
    adv_weight: float = 1.0

    def __post_init__(self):
        if not 0 <= self.adv_weight <= 1:
            raise ConfigError(f"method.adv_weight (lambda) must lie in [0, 1], got {self.adv_weight}.")


@METHODS.register()
class PGDAT(Method):
    name = "pgd_at"
    Options = PGDATOptions

    def __init__(self, options: PGDATOptions, threat):
        super().__init__(options, threat)
        self.attack = PGD(threat.eps, threat.step_size(options.step_size),
                          options.steps, norm=threat.norm, random_start="uniform" if options.random_start else "none",
                          restarts=options.restarts, model_mode=options.bn_mode)

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        lam = self.options.adv_weight
        if lam == 0:
            logits = model(x)
            return StepOutput(ctx.cross_entropy(logits, y), logits, views=((x, logits, 1.0),))
        x_adv = self.attack(model, x, y, ctx.noise)
        adv_logits = model(x_adv)
        loss = lam * ctx.cross_entropy(adv_logits, y)
        logs, views = {}, ((x_adv, adv_logits, lam),)
        if lam < 1:
            clean_logits = model(x)
            clean_loss = ctx.cross_entropy(clean_logits, y)
            loss = loss + (1 - lam) * clean_loss
            logs["clean_loss"] = clean_loss.detach()
            views = ((x, clean_logits, 1 - lam), *views)
        return StepOutput(loss, adv_logits, logs, views)
