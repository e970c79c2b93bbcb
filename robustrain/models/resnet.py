"""ResNets for 32x32 inputs: a 3x3 stride-1 stem and no max-pool (the layout of the
CIFAR robustness literature), in post-activation (He et al. 2016a) and pre-activation
(He et al. 2016b) form; the post-activation ones also with ImageNet's stem (`stem="imagenet"`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import DEFAULT, Condition, LambdaCodes, NormSpec, SlimmableConv2d, SlimmableLinear, channels_at
from ..nn.condition import mask_channels
from .base import Classifier, ConditionedSequential, conv1x1, conv3x3


class Shortcut(nn.Module):
    """Identity, or a strided 1x1 projection followed by BN when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: NormSpec, with_bn: bool = True):
        super().__init__()
        self.needed = stride != 1 or in_channels != out_channels
        if self.needed:
            self.conv = conv1x1(in_channels, out_channels, stride)
            self.bn = norm(out_channels, film=False) if with_bn else None

    def forward(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        if not self.needed:
            return x
        x = self.conv(x, cond)
        return self.bn(x, cond) if self.bn is not None else x


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A for CIFAR: subsample, then zero-pad the new channels (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = channels_at(self.out_channels, cond.width) - x.shape[1]
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, norm: NormSpec, mask_index: int = 0,
                 zero_pad_shortcut: bool = False):
        super().__init__()
        self.mask_index = mask_index
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = norm(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm(channels)
        if zero_pad_shortcut and (stride != 1 or in_channels != channels):
            self.shortcut = ZeroPadShortcut(in_channels, channels, stride)
        else:
            self.shortcut = Shortcut(in_channels, channels, stride, norm)

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x, cond), cond))
        out = self.bn2(self.conv2(mask_channels(out, cond, self.mask_index), cond), cond)
        return F.relu(out + self.shortcut(x, cond))


class ZeroPadBasicBlock(BasicBlock):
    def __init__(self, in_channels: int, channels: int, stride: int, norm: NormSpec, mask_index: int = 0):
        super().__init__(in_channels, channels, stride, norm, mask_index, zero_pad_shortcut=True)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, norm: NormSpec, mask_index: int = 0):
        super().__init__()
        self.mask_index = mask_index
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = norm(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = norm(channels)
        self.conv3 = conv1x1(channels, out_channels)
        self.bn3 = norm(out_channels)
        self.shortcut = Shortcut(in_channels, out_channels, stride, norm)

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x, cond), cond))
        out = F.relu(self.bn2(self.conv2(mask_channels(out, cond, self.mask_index), cond), cond))
        out = self.bn3(self.conv3(out, cond), cond)
        return F.relu(out + self.shortcut(x, cond))


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, norm: NormSpec, mask_index: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        self.mask_index = mask_index
        self.dropout = dropout
        self.bn1 = norm(in_channels)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = norm(channels)
        self.conv2 = conv3x3(channels, channels)
        self.shortcut = Shortcut(in_channels, channels, stride, norm, with_bn=False)

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        pre = F.relu(self.bn1(x, cond))
        # The projection shortcut sees the pre-activated input, as in He et al. (2016b).
        shortcut = self.shortcut(pre, cond) if self.shortcut.needed else x
        out = F.relu(self.bn2(self.conv1(pre, cond), cond))
        out = self.conv2(mask_channels(F.dropout(out, self.dropout, self.training), cond, self.mask_index), cond)
        return out + shortcut


def make_stages(block: type[nn.Module], stage_blocks: Sequence[int], stage_channels: Sequence[int], in_channels: int,
                norm: NormSpec, **block_options) -> tuple[nn.ModuleList, int]:
    """Stages of `block`; the first stage keeps the resolution, later ones halve it. Blocks are
    numbered in order (`mask_index`: their entry in Condition.channel_masks)."""
    expansion = block.expansion
    stages = nn.ModuleList()
    made = 0
    for index, (count, channels) in enumerate(zip(stage_blocks, stage_channels)):
        blocks = ConditionedSequential()
        for b in range(count):
            stride = 2 if index > 0 and b == 0 else 1
            blocks.append(block(in_channels, channels, stride, norm, made, **block_options))
            in_channels = channels * expansion
            made += 1
        stages.append(blocks)
    return stages, in_channels


def run_stages(stages: nn.ModuleList, x: torch.Tensor, cond: Condition) -> torch.Tensor:
    for stage in stages:
        x = stage(x, cond)
    return x


class ResNet(Classifier):
    """ResNet-18/34/50 (stem 64 channels, stages 64-128-256-512).

    stem: "cifar", a 3x3 stride-1 convolution (32x32 inputs); "imagenet", torchvision's layout: a
    7x7 stride-2 convolution and a 3x3 stride-2 max-pool (224x224 inputs; the bottleneck's stride
    sits on its 3x3 convolution, "ResNet v1.5", as in torchvision and timm).
    """

    def __init__(self, block, stage_blocks: Sequence[int], num_classes: int, mean, std, in_channels: int = 3,
                 norm: NormSpec = NormSpec(), stem: Literal["cifar", "imagenet"] = "cifar",
                 lambda_codes: LambdaCodes | None = None, weight_bits: int | None = None):
        super().__init__(mean, std, norm, lambda_codes, weight_bits)
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}.")
        self.stem = stem
        self.conv1 = conv3x3(in_channels, 64) if stem == "cifar" else \
            SlimmableConv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(64)
        self.stages, width = make_stages(block, stage_blocks, (64, 128, 256, 512), 64, norm)
        self.fc = SlimmableLinear(width, num_classes)
        self.finish()

    def feature_map(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x, cond), cond))
        if self.stem == "imagenet":
            x = F.max_pool2d(x, 3, stride=2, padding=1)
        return run_stages(self.stages, x, cond)


class PreActResNet(Classifier):
    """Pre-activation ResNet with the final BN-ReLU before pooling (He et al. 2016b; the
    PreAct-ResNet-18 of Rice et al.'s robust-overfitting study)."""

    def __init__(self, stage_blocks: Sequence[int], num_classes: int, mean, std, in_channels: int = 3,
                 norm: NormSpec = NormSpec(),
                 lambda_codes: LambdaCodes | None = None, weight_bits: int | None = None):
        super().__init__(mean, std, norm, lambda_codes, weight_bits)
        self.conv1 = conv3x3(in_channels, 64)
        self.stages, width = make_stages(PreActBlock, stage_blocks, (64, 128, 256, 512), 64, norm)
        self.bn = norm(width, film=False)
        self.fc = SlimmableLinear(width, num_classes)
        self.finish()

    def feature_map(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        x = self.conv1(x, cond)
        for stage in self.stages:
            x = stage(x, cond)
        return F.relu(self.bn(x, cond))


class CifarResNet(Classifier):
    """He et al. (2016a)'s CIFAR ResNet-(6n+2): 16-32-64 channels, zero-padding shortcuts."""

    def __init__(self, depth: int, num_classes: int, mean, std, in_channels: int = 3, norm: NormSpec = NormSpec(),
                 lambda_codes: LambdaCodes | None = None, weight_bits: int | None = None):
        super().__init__(mean, std, norm, lambda_codes, weight_bits)
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}.")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = norm(16)
        self.stages, width = make_stages(ZeroPadBasicBlock, (n, n, n), (16, 32, 64), 16, norm)
        self.fc = SlimmableLinear(width, num_classes)
        self.finish()

    def feature_map(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        return run_stages(self.stages, F.relu(self.bn1(self.conv1(x, cond), cond)), cond)


class WideResNet(Classifier):
    """WRN-depth-k (Zagoruyko & Komodakis) with pre-activation blocks, as in the TRADES and
    robust-overfitting code: stem conv 16, stages 16k-32k-64k, final BN-ReLU. dropout: between
    the two convolutions of each block (0.3 in the OAT code's WRN-16-8 and WRN-40-2)."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int, mean, std, in_channels: int = 3,
                 dropout: float = 0.0, norm: NormSpec = NormSpec(),
                 lambda_codes: LambdaCodes | None = None, weight_bits: int | None = None):
        super().__init__(mean, std, norm, lambda_codes, weight_bits)
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 (16, 28, 34, 40, ...), got {depth}.")
        n = (depth - 4) // 6
        channels = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = conv3x3(in_channels, 16)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}.")
        self.stages, width = make_stages(PreActBlock, (n, n, n), channels, 16, norm, dropout=dropout)
        self.bn = norm(width, film=False)
        self.fc = SlimmableLinear(width, num_classes)
        self.finish()

    feature_map = PreActResNet.feature_map
