"""The attack interface: a configuration object; calling it perturbs one batch.

Attacks see any `x -> logits` module with inputs in [0, 1]. They run it in the BN mode
they are configured for (eval by default) and restore every submodule's mode after;
they work inside `torch.no_grad()` blocks too.
They ask autograd for input gradients only, so no parameter gradient is computed or
accumulated during attack steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError

ModelMode = Literal["eval", "train"]


@contextmanager
def running_mode(model: nn.Module, mode: ModelMode) -> Iterator[None]:
    """Put `model` in train or eval mode for the block; restore each submodule's own mode after."""
    if mode not in ("eval", "train"):
        raise ConfigError(f"model mode must be 'eval' or 'train', got {mode!r}.")
    saved = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for module, training in saved:
            module.training = training


@contextmanager
def attacking(model: nn.Module, mode: ModelMode) -> Iterator[None]:
    """The context every attack runs in: the requested BN mode, gradients enabled."""
    with running_mode(model, mode), torch.enable_grad():
        yield


def check_norm(norm: str) -> None:
    """The threat norms every attack supports; anything else is a ConfigError naming it."""
    if norm not in ("linf", "l2"):
        raise ConfigError(f"norm must be 'linf' or 'l2', got {norm!r}.")


def check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    """One label per image, or a ValueError naming both counts."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels.")


class WorstCase:
    """A batch's adversarial images over several attack rounds, each round attacking only the
    images no earlier round fooled; an image keeps the first adversarial example found for it.

        record = WorstCase(x, robust=model(x).argmax(1) == y)
        for ...:
            index = record.remaining()        # indices of the images still robust
            if index.numel() == 0: break
            record.update(index, found, fooled)   # found, fooled: per image of index
        record.adversarial, record.robust
    """

    def __init__(self, x: torch.Tensor, robust: torch.Tensor):
        self.adversarial = x.clone()
        self.robust = robust.clone()

    def remaining(self) -> torch.Tensor:
        return self.robust.nonzero().squeeze(1)

    def update(self, index: torch.Tensor, found: torch.Tensor, fooled: torch.Tensor) -> None:
        self.adversarial[index[fooled]] = found[fooled]
        self.robust[index[fooled]] = False


@dataclass
class AttackResult:
    """What `Attack.run` returns: the images it made and, per image, whether the model gets it wrong."""

    adversarial: torch.Tensor
    fooled: torch.Tensor

    @property
    def robust(self) -> torch.Tensor:
        """Per image: the model still classifies it correctly."""
        return ~self.fooled

    @property
    def robust_accuracy(self) -> float:
        return self.robust.float().mean().item()


class Attack:
    """Base class: subclasses implement `perturb(model, x, y, generator)`.

    `attack(model, x, y, generator)` returns the images (what training needs, with no extra pass);
    `attack.run(...)` returns an AttackResult, which also says which images fool the model."""

    def __init__(self, model_mode: ModelMode = "eval"):
        if model_mode not in ("eval", "train"):
            raise ConfigError(f"model_mode must be 'eval' or 'train', got {model_mode!r}.")
        self.model_mode = model_mode

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial images for (x, y); `generator` seeds any randomness (CPU generator)."""
        check_batch(x, y)
        with attacking(model, self.model_mode):
            return self.perturb(model, x.detach(), y.detach(), generator)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator | None = None) -> AttackResult:
        """The adversarial images and which of them the model misclassifies (one more forward pass,
        in the attack's model mode; attacks that know it already override this)."""
        adversarial = self(model, x, y, generator)
        with running_mode(model, self.model_mode), torch.no_grad():
            return AttackResult(adversarial, model(adversarial).argmax(1) != y)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"
