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


class Attack:
    """Base class: subclasses implement `perturb(model, x, y, generator)`."""

    def __init__(self, model_mode: ModelMode = "eval"):
        if model_mode not in ("eval", "train"):
            raise ConfigError(f"model_mode must be 'eval' or 'train', got {model_mode!r}.")
        self.model_mode = model_mode

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial images for (x, y); `generator` seeds any randomness (CPU generator)."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels.")
        with attacking(model, self.model_mode):
            return self.perturb(model, x.detach(), y.detach(), generator)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"
