"""Standard training: minimise cross-entropy on the (augmented) clean images."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method, StepContext, StepOutput


@dataclass(frozen=True)
class StandardOptions:
    pass


class Standard(Method):
    name = "standard"
    Options = StandardOptions

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        logits = model(x)
        return StepOutput(ctx.cross_entropy(logits, y), logits)
