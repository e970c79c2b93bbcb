"""Once-for-All Adversarial Training, OAT and OATS (Wang et al., NeurIPS 2020).

One model f(x; λ) conditioned on the trade-off weight λ (FiLM codes + dual BN), trained for
every λ of its grid Λ at once:

    min_θ E_{λ ~ P(Λ)} E_{(x, y)} [ (1 - λ) CE(f(x; λ), y) + λ max_{||δ|| <= eps} CE(f(x + δ; λ), y) ]

Per batch, as the official OAT.py ("efficient" mode with --use2BN):
1. λ per sample: the first ⌈B / |Λ|⌉ samples (or ⌈p B⌉ with `zero_share` p) get λ = 0, the rest
   are uniform over the non-zero values.
2. Clean forward of every sample in train mode, each with its own code; λ = 0 samples use the
   clean BN, λ > 0 samples the adversarial BN, for their clean forward too (routing by λ).
3. PGD on the λ > 0 samples only, each conditioned on its own code, BN in eval mode, no
   parameter gradients: `steps` = 7 steps of min(1.25 eps, eps + 4/255) / 7 (≈ 1.43/255 at
   8/255) from a uniform random start.
4. Adversarial forward of those samples in train mode, through the adversarial BN.
5. loss = mean_i [ (1 - λ_i) CE_clean,i + λ_i CE_adv,i ] (CE_adv,i = 0 where λ_i = 0).

OATS: on a slimmable model (the `widths` model option) the same loss is computed for every
width, each width attacked through its own sub-network, with the same λ samples; the losses
are summed, so one backward pass accumulates every width's gradients before the single
optimizer step (the slimmable-network recipe; the official repository ships no OATS training
script).

Routing is per sample (a route tensor in the `Condition`), not the official contiguous split
index, so it stays right under DataParallel/DDP and whatever the order of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..attacks import PGD
from ..errors import ConfigError
from ..host import to_device
from ..models.base import BoundClassifier
from ..nn import Condition, LambdaCodes
from .base import METHODS, Method, StepContext, StepOutput


@dataclass(frozen=True)
class OATOptions:
    """steps / step_size: the training PGD (step_size None: min(1.25 eps, eps + 4/255) / steps
    for L-inf, 1.25 eps / steps for L2, the official rule). zero_share: the share of each batch
    given λ = 0 (None: 1 / |Λ|, the official default)."""

    steps: int = 7
    step_size: float | None = None
    zero_share: float | None = None

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"method.steps must be at least 1, got {self.steps}.")
        if self.zero_share is not None and not 0 <= self.zero_share <= 1:
            raise ConfigError(f"method.zero_share must lie in [0, 1], got {self.zero_share}.")


def zero_lambda_count(grid: Sequence[float], batch: int, zero_share: float | None) -> int:
    """How many samples of a batch get λ = 0: ⌈share · batch⌉ (share 1/|Λ| by default); none when
    the grid has no 0, all when it has nothing else."""
    if all(v == 0 for v in grid):
        return batch
    if not any(v == 0 for v in grid):
        return 0
    share = 1 / len(grid) if zero_share is None else zero_share
    return min(batch, math.ceil(share * batch))


def sample_lambda_indices(values: Sequence[float], batch: int, zero_share: float | None,
                          generator: torch.Generator) -> torch.Tensor:
    """Per-sample indices into the grid `values`: the first `zero_lambda_count` are λ = 0, the
    others uniform over the non-zero values. Int64 on the CPU."""
    grid = [float(v) for v in values]
    zeros = zero_lambda_count(grid, batch, zero_share)
    zero = grid.index(0.0) if zeros else 0
    nonzero = torch.tensor([i for i, v in enumerate(grid) if v != 0], dtype=torch.int64)
    rest = nonzero[torch.randint(len(nonzero), (batch - zeros,), generator=generator)] if batch > zeros else \
        torch.zeros(0, dtype=torch.int64)
    return torch.cat([torch.full((zeros,), zero, dtype=torch.int64), rest])


@METHODS.register()
class OAT(Method):
    name = "oat"
    Options = OATOptions

    def __init__(self, options: OATOptions, threat):
        super().__init__(options, threat)
        step = options.step_size
        if step is None:
            budget = min(1.25 * threat.eps, threat.eps + 4 / 255) if threat.norm == "linf" else 1.25 * threat.eps
            step = budget / options.steps
        self.attack = PGD(threat.eps, step, options.steps, norm=threat.norm, random_start="uniform",
                          model_mode="eval")

    def attach(self, model: nn.Module) -> None:
        if getattr(model, "lambda_codes", None) is None:
            raise ConfigError("method oat needs a model conditioned on λ: add `lambdas: [0, 0.1, 0.2, 0.3, 0.4, 1]` "
                              "to the model options (and `widths: [0.5, 0.75, 1]` for OATS).")

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        codes: LambdaCodes = model.lambda_codes
        indices = to_device(sample_lambda_indices(codes.grid, len(y), self.options.zero_share, ctx.generator), x.device)
        # The samples with λ > 0 (the attacked ones) come last, so their rows are known on the host.
        attacked_rows = torch.arange(zero_lambda_count(codes.grid, len(y), self.options.zero_share), len(y),
                                     device=x.device)
        lam = codes.values[indices]
        cond = Condition(route=codes.route(indices), code=codes.encode(indices))
        total, logs, logits = 0, {}, None
        for width in sorted(model.widths, reverse=True):
            loss, clean_logits, width_logs = self.width_loss(model, x, y, lam, attacked_rows, Condition(
                route=cond.route, code=cond.code, width=width), ctx)
            total = total + loss
            logits = clean_logits if logits is None else logits
            suffix = "" if len(model.widths) == 1 else f"_w{width:g}"
            logs.update({k + suffix: v for k, v in width_logs.items()})
        logs["lambda_zero_share"] = (lam == 0).float().mean()
        return StepOutput(total, logits, logs)

    def width_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, rows: torch.Tensor,
                   cond: Condition, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """mean_i [(1 - λ_i) CE_clean,i + λ_i CE_adv,i] of one (sub-)network, `rows` the samples
        with λ > 0; also its clean logits."""
        clean_logits = model(x, cond)
        clean = ctx.cross_entropy(clean_logits, y, reduction="none")
        adversarial = torch.zeros_like(clean)
        if len(rows):
            attacked = Condition(route=cond.route[rows], code=cond.code[rows], width=cond.width)
            x_adv = self.attack(BoundClassifier(model, attacked), x[rows], y[rows], ctx.noise)
            adversarial = adversarial.index_put((rows,), ctx.cross_entropy(model(x_adv, attacked), y[rows],
                                                                           reduction="none"))
        loss = ((1 - lam) * clean + lam * adversarial).mean()
        logs = {"clean_loss": clean.mean().detach(),
                "adv_loss": adversarial[rows].mean().detach() if len(rows) else torch.zeros((), device=x.device)}
        return loss, clean_logits, logs
