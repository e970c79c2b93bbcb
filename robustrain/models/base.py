"""What every model of the registry is: [0, 1] images in, logits out, conditioning optional."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..nn import DEFAULT, Condition, Normalize


class Classifier(nn.Module):
    """A classifier whose first operation is input normalisation.

    Subclasses implement `features(x, cond)`, the penultimate representation of
    normalised images, and set `self.fc`, the linear head.
    """

    fc: nn.Linear

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)

    def features(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        raise NotImplementedError

    def penultimate(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        """Features of [0, 1] images just before the linear head."""
        return self.features(self.normalize(x), cond)

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        return self.fc(self.penultimate(x, cond))

    def bind(self, cond: Condition) -> "BoundClassifier":
        """A plain `x -> logits` module that always runs this model under `cond`."""
        return BoundClassifier(self, cond)


class BoundClassifier(nn.Module):
    """A model with its conditioning fixed: what attacks and evaluation see."""

    def __init__(self, model: Classifier, cond: Condition):
        super().__init__()
        self.model = model
        self.cond = cond

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.cond)


class ConditionedSequential(nn.ModuleList):
    """A sequence of blocks that each take `(x, cond)`."""

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        for block in self:
            x = block(x, cond)
        return x


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
