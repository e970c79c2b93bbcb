"""The convolution and linear layers of every model: slimmable, optionally weight-quantized.

Slimmable (Yu et al., 2019): a sub-network of width w uses the first ⌊w·C⌋ channels of every
layer's shared weights. A layer takes as many input channels as its input has and produces
⌊w·C_out⌋ outputs for the call's width, so at width 1 these are ordinary Conv2d / Linear
layers (same parameters, same state-dict keys, the same computation).

Weight-quantized: with `weight_bits` k set (a model option, fixed at construction), the layer
computes with the k-bit per-channel quantization of its weights and trains them through the
straight-through estimator (see quantize.py); the stored weights stay full precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .condition import DEFAULT, Condition
from .quantize import fake_quantize


def channels_at(channels: int, width: float) -> int:
    """⌊width · channels⌋, the sub-network's channel count (as the slimmable and OATS code)."""
    return int(channels * width)


def check_widths(widths: tuple[float, ...]) -> tuple[float, ...]:
    widths = tuple(float(w) for w in widths)
    if not widths or any(not 0 < w <= 1 for w in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"widths must be distinct multipliers in (0, 1], got {list(widths)}.")
    if 1.0 not in widths:
        raise ValueError(f"widths must include 1.0 (the whole network), got {list(widths)}.")
    return widths


def _weight(layer: nn.Conv2d | nn.Linear) -> torch.Tensor:
    return layer.weight if layer.weight_bits is None else fake_quantize(layer.weight, layer.weight_bits)


class SlimmableConv2d(nn.Conv2d):
    weight_bits: int | None = None

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        out_channels = channels_at(self.out_channels, cond.width)
        weight = _weight(self)
        if out_channels == self.out_channels and x.shape[1] == self.in_channels:
            return self._conv_forward(x, weight, self.bias)
        if out_channels < 1:
            raise ValueError(f"width {cond.width} leaves no channel of a {self.out_channels}-channel convolution.")
        bias = self.bias[:out_channels] if self.bias is not None else None
        return F.conv2d(x, weight[:out_channels, : x.shape[1]], bias, self.stride, self.padding, self.dilation)


class SlimmableLinear(nn.Linear):
    """A classifier head: all outputs, from however many input features the sub-network has."""

    weight_bits: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _weight(self)[:, : x.shape[1]], self.bias)
