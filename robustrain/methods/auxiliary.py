"""Auxiliary Training (Zhang et al., CVPR 2020): auxiliary heads on corrupted views of each batch,
selective BN, input-aware self-distillation and L2 weight merging of the heads' classifiers.

Per batch, with view 0 the clean (augmented) batch and view j = T_j(x) for each head j = 1..K:

    L = CE(z_0, y) + α Σ_j CE(z_j, y) + β Σ_j H(softmax(sg z_0), softmax(z_j))
        + 1[progress >= merge_from] γ Σ_j (||W_j - W_0||² + ||b_j - b_0||²)

z_0 = the model's own head on the clean view; z_j = auxiliary head j (attention mask, bottleneck,
linear of the primary head's shape) on the model's last feature map of view j. Defaults are the
official code's: K = 4 views (noise, blur, colour, rotation), α = β = 0.05, γ = 1 from 6/7 of the
schedule (epoch 180 of 210).

- Selective BN: corrupted views are normalised with their own batch statistics but never change
  the running statistics (Condition(update_bn_stats=False)), which therefore come from clean
  batches only, as the official snapshot-and-restore does. `selective_bn: false` lets every view
  update them (the paper's ablation).
- Distillation direction: "primary_teaches" (the official code: the clean logits, detached, teach
  every head, and the gradient reaches the backbone through the corrupted views) or
  "heads_teach" (the abstract: each head's detached prediction teaches the primary classifier).
- The heads belong to the method, not the model: the trained model is the plain architecture,
  with the standard parameter count and speed.
- Departures: the views share the clean view's crop and flip (the trainer augments each batch
  once) instead of drawing their own; the noise view clips instead of wrapping around (an
  official-code bug); the stem ReLU the official backbone forgets is kept.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import running_mode
from ..errors import ConfigError
from ..nn import Condition
from .base import METHODS, Method, StepContext, StepOutput, layout_like
from .views import make_view


class AuxiliaryHead(nn.Module):
    """The official AuxiliaryClassifier: features * attention mask -> bottleneck -> pool -> linear."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        half = channels // 2
        self.attention = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.Sigmoid())
        self.bottleneck = nn.Sequential(
            nn.Conv2d(channels, half, 1), nn.BatchNorm2d(half), nn.ReLU(),
            nn.Conv2d(half, half, 3), nn.BatchNorm2d(half), nn.ReLU(),  # no padding, as the official head
            nn.Conv2d(half, channels, 1), nn.BatchNorm2d(channels), nn.ReLU())
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        if min(feature_map.shape[-2:]) < 3:
            raise ValueError(f"auxiliary heads need a last feature map of at least 3x3, got "
                             f"{tuple(feature_map.shape[-2:])}.")
        features = self.bottleneck(self.attention(feature_map) * feature_map)
        return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))


def soft_cross_entropy(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(teacher), softmax(student)) averaged over the batch; the teacher is detached."""
    teacher = F.softmax(teacher_logits.detach().float(), 1)
    return -(teacher * F.log_softmax(student_logits.float(), 1)).sum(1).mean()


def merge_penalty(heads: nn.ModuleList, primary: nn.Linear) -> torch.Tensor:
    """Σ_j ||W_j - W_0||² + ||b_j - b_0||²: pulls each head's classifier toward the primary one."""
    return sum((head.fc.weight - primary.weight).pow(2).sum() + (head.fc.bias - primary.bias).pow(2).sum()
               for head in heads)


@dataclass(frozen=True)
class AuxiliaryOptions:
    """views: one auxiliary head per view (built-in "noise", "blur", "color", "rotate", or a
    corruption at a severity such as "fog/3"). aux_weight α, distill_weight β, merge_weight γ,
    merge_from: the fraction of training after which merging is on (6/7: epoch 180 of 210)."""

    views: tuple[str, ...] = ("noise", "blur", "color", "rotate")
    aux_weight: float = 0.05
    distill_weight: float = 0.05
    distill_direction: Literal["primary_teaches", "heads_teach"] = "primary_teaches"
    merge_weight: float = 1.0
    merge_from: float = 6 / 7
    selective_bn: bool = True

    def __post_init__(self):
        if not self.views:
            raise ConfigError("method.views must name at least one view.")
        for name in ("aux_weight", "distill_weight", "merge_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"method.{name} must be non-negative, got {getattr(self, name)}.")
        if not 0 <= self.merge_from <= 1:
            raise ConfigError(f"method.merge_from must lie in [0, 1], got {self.merge_from}.")
        if self.distill_direction not in ("primary_teaches", "heads_teach"):
            raise ConfigError(f"method.distill_direction must be primary_teaches or heads_teach, got "
                              f"{self.distill_direction!r}.")


@METHODS.register()
class Auxiliary(Method):
    name = "auxiliary"
    Options = AuxiliaryOptions

    def __init__(self, options: AuxiliaryOptions, threat):
        super().__init__(options, threat)
        self.view_fns = [make_view(v) for v in options.views]
        self.heads = nn.ModuleList()

    def attach(self, model: nn.Module) -> None:
        if not hasattr(model, "last_feature_map"):
            raise ConfigError("method auxiliary needs a registered model (it attaches heads to the last feature map).")
        channels, classes = model.fc.in_features, model.fc.out_features
        device = model.fc.weight.device
        self.heads = nn.ModuleList(AuxiliaryHead(channels, classes) for _ in self.view_fns).to(device)

    def check_images(self, model: nn.Module, shape: tuple[int, int, int]) -> None:
        with running_mode(model, "eval"), torch.no_grad():
            size = tuple(model.last_feature_map(torch.zeros(1, *shape, device=model.fc.weight.device)).shape[-2:])
        if min(size) < 3:
            raise ConfigError(f"method auxiliary needs a last feature map of at least 3x3, but {shape[1]}x{shape[2]} "
                              f"images give {size[0]}x{size[1]} in this model; use larger images or a model that "
                              "downsamples less.")

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        o = self.options
        logits = model(x)
        view_cond = Condition(update_bn_stats=not o.selective_bn)
        aux_ce, distill = 0, 0
        for view, head in zip(self.view_fns, self.heads):
            corrupted = layout_like(view(x, ctx.generator), x)
            head_logits = head(model.last_feature_map(corrupted, view_cond))
            aux_ce = aux_ce + ctx.cross_entropy(head_logits, y)
            distill = distill + (soft_cross_entropy(logits, head_logits) if o.distill_direction == "primary_teaches"
                                 else soft_cross_entropy(head_logits, logits))
        loss = ctx.cross_entropy(logits, y) + o.aux_weight * aux_ce + o.distill_weight * distill
        penalty = merge_penalty(self.heads, model.fc)
        if ctx.progress >= o.merge_from:
            loss = loss + o.merge_weight * penalty
        return StepOutput(loss, logits, {"aux_ce": aux_ce.detach(), "distill": distill.detach(),
                                         "merge_penalty": penalty.detach()})


@dataclass(frozen=True)
class MergingCheck:
    """What the weight merging did in one run whose merging filled its last epoch (the official
    schedule's shape): how far the primary classifier moved in that epoch, relative to its norm, and
    the heads' mean distance ‖W_j − W_0‖ to it before and after."""

    primary_relative_change_last_epoch: float
    head_distance_before: float
    head_distance_after: float


def check_merging(folder: str | Path) -> MergingCheck:
    """The MergingCheck of an Auxiliary Training run, from its last two end-of-epoch checkpoints."""
    from safetensors.torch import load_file

    from ..train.checkpoint import epoch_checkpoints

    kept = epoch_checkpoints(Path(folder))
    if len(kept) < 2:
        raise ConfigError(f"{folder} keeps {len(kept)} end-of-epoch checkpoints; the merging check needs the last two.")
    before, after = (load_file(path) for path in kept[-2:])
    primary = "model/fc.weight"
    heads = sorted(k for k in after if k.startswith("method/heads.") and k.endswith(".fc.weight"))
    if not heads:
        raise ConfigError(f"{folder} holds no auxiliary heads; the merging check needs an Auxiliary Training run.")

    def gap(state: dict[str, torch.Tensor]) -> float:
        return statistics.fmean(float((state[k] - state[primary]).norm()) for k in heads)

    moved = float((after[primary] - before[primary]).norm() / before[primary].norm())
    return MergingCheck(moved, gap(before), gap(after))
