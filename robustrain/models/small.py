"""A small VGG-style network for CPU experiments (about 0.3M parameters at width 32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import DEFAULT, Condition, LambdaCodes, NormSpec, SlimmableLinear
from .base import Classifier, conv3x3


class ConvBNReLU(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm: NormSpec):
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels)
        self.bn = norm(out_channels)

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x, cond), cond))


class SmallCNN(Classifier):
    """Three stages of two conv-BN-ReLU layers (width, 2*width, 4*width channels), each
    stage but the last followed by 2x2 max-pooling, then global average pooling. Works
    for any input size of at least 4x4."""

    def __init__(self, num_classes: int, mean, std, in_channels: int = 3, width: int = 32,
                 norm: NormSpec = NormSpec(), lambda_codes: LambdaCodes | None = None, weight_bits: int | None = None):
        super().__init__(mean, std, norm, lambda_codes, weight_bits)
        if width < 1:
            raise ValueError(f"width must be a positive number of channels, got {width}.")
        channels = (width, 2 * width, 4 * width)
        layers = []
        previous = in_channels
        for c in channels:
            layers += [ConvBNReLU(previous, c, norm), ConvBNReLU(c, c, norm)]
            previous = c
        self.layers = nn.ModuleList(layers)
        self.fc = SlimmableLinear(previous, num_classes)
        self.finish()

    def feature_map(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x, cond)
            if index in (1, 3):
                x = F.max_pool2d(x, 2)
        return x
