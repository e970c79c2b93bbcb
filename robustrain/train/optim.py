"""Optimizers with parameter groups for weight decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class OptimConfig:
    """SGD (momentum, Nesterov) or AdamW. `decay_norm_and_bias: false` exempts BN weights
    and all biases (every parameter with fewer than two dimensions) from weight decay."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}.")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError(f"optim.weight_decay must be >= 0 and momentum in [0, 1), got "
                              f"{self.weight_decay} and {self.momentum}.")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ConfigError("optim.nesterov needs the sgd optimizer with a positive momentum.")


def build_optimizer(config: OptimConfig, modules: list[nn.Module],
                    exclude: tuple[nn.Parameter, ...] = ()) -> torch.optim.Optimizer:
    """The optimizer of every trainable parameter of `modules` but those in `exclude` (parameters a
    method trains itself, such as EWS's controller)."""
    excluded = {id(p) for p in exclude}
    decay, no_decay = [], []
    for module in modules:
        for param in module.parameters():
            if param.requires_grad and id(param) not in excluded:
                (decay if config.decay_norm_and_bias or param.dim() > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
