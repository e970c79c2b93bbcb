"""What every model of the registry is: [0, 1] images in, logits out, conditioning optional."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import DEFAULT, Condition, LambdaCodes, NormSpec, Normalize, SlimmableConv2d, SlimmableLinear


class Classifier(nn.Module):
    """A classifier whose first operation is input normalisation.

    Subclasses implement `feature_map(x, cond)`, the last feature map of normalised images
    (what auxiliary heads attach to), and set `self.fc`, the linear head on its global average.

    A conditioned model (built with the registry's `lambdas` and/or `widths` options) also
    holds `lambda_codes` (OAT's λ grid and encoding) and `widths` (OATS' sub-network
    widths, `norm.widths`); `bind(lam=..., width=...)` turns one of its settings into a plain
    classifier. `weight_bits` is the bit-width its convolutions and linear layers compute with
    (None: full precision). Every constructor passes these to `__init__` first and calls
    `finish()` last, so a model built directly has them as one built by the registry.
    """

    fc: nn.Linear

    def __init__(self, mean: Sequence[float], std: Sequence[float], norm: NormSpec = NormSpec(),
                 lambda_codes: LambdaCodes | None = None, weight_bits: int | None = None):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.lambda_codes = lambda_codes
        self.widths: tuple[float, ...] = norm.widths
        self.weight_bits = weight_bits

    def finish(self) -> None:
        """The constructor's last step: every convolution and linear layer computes with the model's
        `weight_bits`."""
        for layer in self.modules():
            if isinstance(layer, (SlimmableConv2d, SlimmableLinear)):
                layer.weight_bits = self.weight_bits

    def feature_map(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        raise NotImplementedError

    def last_feature_map(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        """The last feature map (N, C, h, w) of [0, 1] images, before pooling."""
        return self.feature_map(self.normalize(x), cond)

    def penultimate(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        """Features of [0, 1] images just before the linear head."""
        return F.adaptive_avg_pool2d(self.last_feature_map(x, cond), 1).flatten(1)

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        return self.fc(self.penultimate(x, cond))

    def compile(self, **options) -> Classifier:
        """Compile, in place, every path methods call: `forward`, `penultimate` and
        `last_feature_map` (torch.compile with `options`); AdCorDA, Auxiliary Training and EWS
        call the feature paths, so compiling `forward` alone would leave them eager. Returns self."""
        for path in ("forward", "penultimate", "last_feature_map"):
            setattr(self, path, torch.compile(getattr(self, path), **options))
        return self

    def maskable_channels(self) -> list[int]:
        """Per residual block (mask_index order), the input channels of its middle convolution: the
        shape of `Condition.channel_masks` (empty for a model without residual blocks)."""
        blocks = sorted((m for m in self.modules() if hasattr(m, "mask_index")), key=lambda m: m.mask_index)
        return [block.conv2.in_channels for block in blocks]

    def condition(self, lam: float | None = None, width: float = 1.0) -> Condition:
        """The condition of one test-time setting: λ's code and BN route, and a width."""
        if width not in self.widths:
            raise ValueError(f"width {width} is not one of this model's widths {list(self.widths)}.")
        if self.lambda_codes is None:
            if lam is not None:
                raise ValueError(f"λ = {lam} was given but this model is not conditioned on λ (no `lambdas` option).")
            return Condition(width=width)
        if lam is None:
            raise ValueError(f"this model is conditioned on λ; choose one of {self.lambda_codes.values.tolist()}.")
        index = torch.tensor(self.lambda_codes.index(lam), device=self.lambda_codes.values.device)
        return Condition(route=int(self.lambda_codes.route(index)), code=self.lambda_codes.encode(index), width=width)

    def bind(self, cond: Condition | None = None, *, lam: float | None = None, width: float = 1.0) -> "BoundClassifier":
        """A plain `x -> logits` module that always runs this model under `cond`, or under the
        setting (lam, width) of a conditioned model."""
        if cond is not None and (lam is not None or width != 1.0):
            raise ValueError("bind takes either a Condition or lam/width, not both.")
        return BoundClassifier(self, cond if cond is not None else self.condition(lam, width))

    def evaluation_conditions(self) -> dict[str, Condition]:
        """Every test-time setting of a conditioned model, by name ({} for a plain model):
        "lambda=0.2", "width=0.5", or "width=0.5,lambda=0.2"."""
        lambdas = self.lambda_codes.values.tolist() if self.lambda_codes is not None else [None]
        if lambdas == [None] and self.widths == (1.0,):
            return {}
        named = {}
        for width in sorted(self.widths):
            for lam in lambdas:
                parts = ([f"width={width:g}"] if len(self.widths) > 1 else []) + \
                        ([f"lambda={lam:g}"] if lam is not None else [])
                named[",".join(parts)] = self.condition(lam, width)
        return named


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


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> SlimmableConv2d:
    return SlimmableConv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> SlimmableConv2d:
    return SlimmableConv2d(in_channels, out_channels, 1, stride=stride, bias=False)


InitScheme = Literal["default", "he_fan_out"]
INIT_SCHEMES: tuple[str, ...] = get_args(InitScheme)


def initialize(model: nn.Module, scheme: InitScheme) -> None:
    """Re-initialise `model`'s layers. default: leave PyTorch's (Kaiming-uniform with a = sqrt(5));
    he_fan_out: every convolution's weights N(0, 2 / (k_h k_w out_channels)) and biases 0, and
    every linear layer's bias 0 (its weights kept), as the DAWNBench fast AT code
    (`CIFAR10/train_cifar.py`, `initialize_weights`) does; BatchNorm is already 1 and 0."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"model.init must be one of {list(INIT_SCHEMES)}, got {scheme!r}.")
    if scheme == "default":
        return
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            fan_out = layer.kernel_size[0] * layer.kernel_size[1] * layer.out_channels
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / fan_out))
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.bias is not None:
            nn.init.zeros_(layer.bias)
