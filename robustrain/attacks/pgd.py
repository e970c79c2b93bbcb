"""Projected gradient descent (Madry et al., 2018) in the L-infinity and L2 balls.

One step, for the loss L ascended (descended when targeted):
    Linf: x' <- Proj_{||x'-x||_inf <= eps} (x' + alpha * sign(grad L))
    L2:   x' <- Proj_{||x'-x||_2  <= eps} (x' + alpha * grad L / ||grad L||_2)
followed by clipping to [0, 1]. With restarts, each image keeps its worst case: a
successful perturbation over an unsuccessful one, else the one of highest loss.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..host import normal, uniform
from .base import Attack, ModelMode, check_norm
from .losses import LOSSES
from .norms import Norm, per_image, project, steepest, unit

RandomStart = Literal["uniform", "normal", "none"]


class PGD(Attack):
    """PGD with `steps` steps of size `alpha` in an `eps` ball.

    loss: "ce" (cross-entropy) or "kl" (KL from the clean prediction, TRADES).
    random_start: "uniform" in the ball, "normal" (x + 0.001 N(0, I), the TRADES start), or "none".
    targeted: y holds target classes and the loss is descended toward them.
    restarts: independent runs; each image keeps its worst case.
    """

    def __init__(self, eps: float, alpha: float, steps: int, *, norm: Norm = "linf", loss: str = "ce",
                 random_start: RandomStart = "uniform", targeted: bool = False, restarts: int = 1,
                 model_mode: ModelMode = "eval"):
        super().__init__(model_mode)
        if eps < 0 or alpha < 0:
            raise ConfigError(f"eps and alpha must be non-negative, got eps={eps}, alpha={alpha}.")
        if steps < 1 or restarts < 1:
            raise ConfigError(f"steps and restarts must be at least 1, got steps={steps}, restarts={restarts}.")
        check_norm(norm)
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}.")
        if random_start not in ("uniform", "normal", "none"):
            raise ConfigError(f"random_start must be 'uniform', 'normal' or 'none', got {random_start!r}.")
        if targeted and loss != "ce":
            raise ConfigError(f"a targeted attack needs loss 'ce', got {loss!r}.")
        self.eps, self.alpha, self.steps = eps, alpha, steps
        self.norm, self.loss, self.random_start = norm, loss, random_start
        self.targeted, self.restarts = targeted, restarts

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        loss_fn = LOSSES[self.loss]
        reference = None
        if self.loss == "kl":
            with torch.no_grad():
                reference = model(x)
        if self.restarts == 1:
            return self._attack_once(model, x, y, reference, generator)
        best, best_loss, best_success = x.clone(), None, None
        for _ in range(self.restarts):
            x_adv = self._attack_once(model, x, y, reference, generator)
            with torch.no_grad():
                logits = model(x_adv)
                loss = loss_fn(logits, y, reference)
                success = self._success(logits, y)
            if best_loss is None:
                best, best_loss, best_success = x_adv, loss, success
                continue
            better = (success & ~best_success) | ((success == best_success) & (loss > best_loss))
            best = torch.where(better[:, None, None, None], x_adv, best)
            best_loss = torch.where(better, loss, best_loss)
            best_success = best_success | success
        return best

    def _success(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        predicted = logits.argmax(1)
        if self.loss == "kl":
            return torch.zeros_like(y, dtype=torch.bool)
        return predicted == y if self.targeted else predicted != y

    def _attack_once(self, model, x, y, reference, generator) -> torch.Tensor:
        loss_fn = LOSSES[self.loss]
        sign = -1.0 if self.targeted else 1.0
        x_adv = project(x, x + self._start(x, generator), self.eps, self.norm)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = loss_fn(model(x_adv), y, reference).sum()
            (grad,) = torch.autograd.grad(sign * loss, x_adv)
            with torch.no_grad():
                x_adv = project(x, x_adv + self.alpha * steepest(grad, self.norm), self.eps, self.norm)
        return x_adv.detach()

    def _start(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.random_start == "none":
            return torch.zeros_like(x)
        if self.random_start == "normal":
            return 0.001 * normal(x.shape, generator, x)
        if self.norm == "linf":
            return (uniform(x.shape, generator, x) * 2 - 1) * self.eps
        direction = unit(normal(x.shape, generator, x), "l2")
        radius = uniform(x.shape[:1], generator, x) * self.eps
        return direction * per_image(radius, direction)
