"""TRADES (Zhang et al., 2019).

    min_theta E[ CE(f(x), y) + beta * max_{||x' - x|| <= eps} KL(p(x) || p(x')) ]

The inner maximisation follows the official code: BN in eval mode, start at
x + 0.001 N(0, I), sign-gradient ascent on the summed KL. The outer KL is averaged over
the batch (batch-mean), also as the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ..attacks import PGD
from ..errors import ConfigError
from .base import METHODS, Method, StepContext, StepOutput


@dataclass(frozen=True)
class TRADESOptions:
    beta: float = 6.0
    steps: int = 10
    step_size: float | None = None

    def __post_init__(self):
        if self.beta < 0:
            raise ConfigError(f"method.beta must be non-negative, got {self.beta}.")


@METHODS.register()
class TRADES(Method):
    name = "trades"
    Options = TRADESOptions

    def __init__(self, options: TRADESOptions, threat):
        super().__init__(options, threat)
        self.attack = PGD(threat.eps, threat.step_size(options.step_size),
                          options.steps, norm=threat.norm, loss="kl", random_start="normal", model_mode="eval")

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        x_adv = self.attack(model, x, y, ctx.noise)
        clean_logits = model(x)
        adv_logits = model(x_adv)
        natural = ctx.cross_entropy(clean_logits, y)
        robust = F.kl_div(F.log_softmax(adv_logits.float(), 1), F.softmax(clean_logits.float(), 1),
                          reduction="batchmean")
        loss = natural + self.options.beta * robust
        return StepOutput(loss, clean_logits, {"natural_loss": natural.detach(), "robust_kl": robust.detach()},
                          views=((x, clean_logits, 1.0), (x_adv, adv_logits, self.options.beta)))
