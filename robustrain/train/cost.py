"""Compute accounting: image passes through the model, counted where they happen.

A forward with autograd enabled is followed by a backward in every method here (attack
steps and training losses), so it counts as one forward+backward pass per image;
forwards under no_grad (reference predictions, evaluation) count as forward-only.
A PGD-10 AT step therefore costs 11 forward+backward passes per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PassCounter:
    forward_backward: int = 0
    forward_only: int = 0

    def _hook(self, module: nn.Module, args) -> None:
        images = args[0].shape[0]
        if torch.is_grad_enabled():
            self.forward_backward += images
        else:
            self.forward_only += images

    def attach(self, model: nn.Module):
        """Count every pass through `model` until the returned handle is removed: every call of
        its input normalisation when it has one (so passes that stop at the features, or run a
        conditioned model through a bound wrapper, count too), else every call of the model."""
        return getattr(model, "normalize", model).register_forward_pre_hook(self._hook)
