"""Adversarial correction (AdCorDA's first stage): the attack turned around.

For an image the model gets wrong, descend the cross-entropy of its *true* label inside the
eps-ball, one signed step at a time,

    x' <- Proj_{B_eps(x) ∩ [0, 1]} (x' - alpha · sign ∇_x' CE(f(x'), y)),

and stop each image as soon as the model classifies it correctly (an image that is already
correct is returned unchanged). No random start: the smallest change that corrects is wanted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import Attack, AttackResult, ModelMode, attacking, check_batch, check_norm
from .norms import Norm, project, steepest


class Correct(Attack):
    def __init__(self, eps: float, alpha: float, steps: int, *, norm: Norm = "linf", model_mode: ModelMode = "eval"):
        super().__init__(model_mode)
        if eps < 0 or alpha <= 0 or steps < 1:
            raise ConfigError(f"correction needs eps >= 0, alpha > 0 and steps >= 1; got eps={eps}, alpha={alpha}, "
                              f"steps={steps}.")
        check_norm(norm)
        self.eps, self.alpha, self.steps, self.norm = eps, alpha, steps, norm

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        return self._correct(model, x, y)[0]

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator | None = None) -> AttackResult:
        """The corrected images; `fooled` marks those still misclassified (the correction failed)."""
        check_batch(x, y)
        with attacking(model, self.model_mode):
            corrected, done = self._correct(model, x.detach(), y.detach())
        return AttackResult(corrected, ~done)

    def _correct(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_corr = x.clone()
        done = torch.zeros(len(y), dtype=torch.bool, device=x.device)
        for step in range(self.steps + 1):
            active = (~done).nonzero().flatten()
            if not len(active):
                break
            current = x_corr[active].requires_grad_(True)
            logits = model(current)
            done[active] = logits.argmax(1) == y[active]
            still = ~done[active]
            if step == self.steps or not still.any():
                break
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y[active], reduction="sum"), current)
            with torch.no_grad():
                moved = project(x[active], current - self.alpha * steepest(grad, self.norm), self.eps, self.norm)
                rows = active[still]
                x_corr[rows] = moved[still]
        return x_corr.detach(), done
