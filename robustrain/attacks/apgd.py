"""Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and a budget-aware step size.

Per image, starting from step size eta = 2 eps:
    z      = P(x_k + eta * sign(grad))                      (L2: grad / ||grad||)
    x_k+1  = P(x_k + a (z - x_k) + (1 - a)(x_k - x_k-1)),   a = 0.75 (1 on the first step)
At checkpoints w_0 = 0, w_1 = 0.22 N, then gaps shrinking by 0.03 N down to 0.06 N, the
step size halves (and the iterate returns to the best point so far) where
    1. the loss increased in at most rho = 75% of the steps since the last checkpoint, or
    2. the step size was not halved at the last checkpoint and the best loss has not
       improved since.
Restarts attack only the images still classified correctly.

We follow the reference code where it departs from the paper, so that our numbers are
comparable with published AutoAttack numbers: at the first checkpoint the reference
compares the first step's loss with a buffer that is still zero (not with the loss at
the starting point), so for the DLR losses, negative until an image is fooled, that step
never counts as an increase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..host import normal, uniform
from .base import Attack, ModelMode, WorstCase, check_norm
from .losses import cross_entropy, dlr
from .norms import Norm, project, steepest, unit

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def checkpoints(steps: int) -> list[int]:
    """The iterations after which the step-size conditions are checked."""
    gap, shrink, minimum = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at = [], 0
    while at + gap <= steps:
        at += gap
        points.append(at)
        gap = max(gap - shrink, minimum)
    return points


class APGD(Attack):
    """APGD on the cross-entropy ("ce", APGD-CE) or the DLR loss ("dlr")."""

    def __init__(self, eps: float, steps: int = 100, *, norm: Norm = "linf",
                 loss: Literal["ce", "dlr"] = "ce", restarts: int = 1, rho: float = 0.75,
                 model_mode: ModelMode = "eval"):
        super().__init__(model_mode)
        if eps < 0 or steps < 1 or restarts < 1:
            raise ConfigError(f"APGD needs eps >= 0, steps >= 1 and restarts >= 1, got {eps}, {steps}, {restarts}.")
        check_norm(norm)
        if loss not in ("ce", "dlr"):
            raise ConfigError(f"APGD loss must be 'ce' or 'dlr', got {loss!r}.")
        self.eps, self.steps, self.norm, self.loss, self.restarts, self.rho = eps, steps, norm, loss, restarts, rho

    def perturb(self, model, x, y, generator):
        loss = cross_entropy if self.loss == "ce" else dlr
        return self.attack_robust(model, x, y, generator, lambda num_classes: [lambda clean: loss] * self.restarts)

    def attack_robust(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None,
                      passes: Callable[[int], list[Callable[[torch.Tensor], Loss]]]) -> torch.Tensor:
        """Run one APGD pass per entry of passes(number of classes), each on the images no
        earlier pass has fooled. An entry maps those images' clean logits to the loss to
        ascend (APGD-T picks its target classes from them)."""
        with torch.no_grad():
            clean_logits = model(x)
        record = WorstCase(x, clean_logits.argmax(1) == y)
        for make_loss in passes(clean_logits.shape[1]):
            index = record.remaining()
            if index.numel() == 0:
                break
            found, fooled = self._search(model, x[index], y[index], make_loss(clean_logits[index]), generator)
            record.update(index, found, fooled)
        return record.adversarial

    def _search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Loss,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One APGD run: (an adversarial example per image where one was found, which were found)."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        x_adv = project(x, x + self.eps * unit(self._start(x, generator), self.norm), self.eps, self.norm)
        loss, grad, logits = self._loss_and_grad(model, x_adv, y, loss_fn)
        fooled = logits.argmax(1) != y
        found = torch.where(fooled.view(shape), x_adv, x)
        best_x, best_loss, best_grad = x_adv.clone(), loss.clone(), grad.clone()
        step = torch.full((x.shape[0],), 2.0 * self.eps, device=x.device, dtype=x.dtype)
        previous_x, previous_loss = x_adv.clone(), torch.zeros_like(loss)
        increases = torch.zeros_like(loss)
        best_at_last_check, halved_at_last_check = best_loss.clone(), torch.ones_like(fooled)
        marks, since = set(checkpoints(self.steps)), 0
        for i in range(self.steps):
            with torch.no_grad():
                momentum = 0.75 if i > 0 else 1.0
                z = project(x, x_adv + step.view(shape) * steepest(grad, self.norm), self.eps, self.norm)
                moved = project(x, x_adv + momentum * (z - x_adv) + (1 - momentum) * (x_adv - previous_x), self.eps,
                                self.norm)
                previous_x, x_adv = x_adv, moved
            loss, grad, logits = self._loss_and_grad(model, x_adv, y, loss_fn)
            with torch.no_grad():
                now_fooled = logits.argmax(1) != y
                found = torch.where((now_fooled & ~fooled).view(shape), x_adv, found)
                fooled |= now_fooled
                increases += (loss > previous_loss).to(loss.dtype)
                previous_loss = loss
                better = loss > best_loss
                best_x = torch.where(better.view(shape), x_adv, best_x)
                best_grad = torch.where(better.view(shape), grad, best_grad)
                best_loss = torch.where(better, loss, best_loss)
                since += 1
                if i + 1 in marks:
                    oscillating = increases <= self.rho * since
                    stalled = ~halved_at_last_check & (best_at_last_check >= best_loss)
                    halve = oscillating | stalled
                    step = torch.where(halve, step / 2, step)
                    x_adv = torch.where(halve.view(shape), best_x, x_adv)
                    grad = torch.where(halve.view(shape), best_grad, grad)
                    halved_at_last_check, best_at_last_check = halve, best_loss.clone()
                    increases.zero_()
                    since = 0
        return found, fooled

    def _loss_and_grad(self, model, x_adv, y, loss_fn):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
        return loss.detach(), grad.detach(), logits.detach()

    def _start(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.norm == "linf":
            return 2 * uniform(x.shape, generator, x) - 1
        return normal(x.shape, generator, x)
