"""Slimmable layers (Yu et al., 2019): a sub-network of width w uses the first ⌊w·C⌋ channels
of every layer's shared weights.

A layer takes as many input channels as its input has and produces ⌊w·C_out⌋ outputs for
the call's width, so at width 1 these are ordinary Conv2d / Linear layers (same parameters,
same state-dict keys, the same computation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .condition import DEFAULT, Condition


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


class SlimmableConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        out_channels = channels_at(self.out_channels, cond.width)
        if out_channels == self.out_channels and x.shape[1] == self.in_channels:
            return super().forward(x)
        if out_channels < 1:
            raise ValueError(f"width {cond.width} leaves no channel of a {self.out_channels}-channel convolution.")
        bias = self.bias[:out_channels] if self.bias is not None else None
        return F.conv2d(x, self.weight[:out_channels, : x.shape[1]], bias, self.stride, self.padding, self.dilation)


class SlimmableLinear(nn.Linear):
    """A classifier head: all outputs, from however many input features the sub-network has."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)
