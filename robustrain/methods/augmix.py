"""AugMix (Hendrycks et al., ICLR 2020): augment-and-mix views and a Jensen-Shannon consistency loss.

Per batch (already cropped and flipped): two AugMix views of every image, one forward pass of
[x; aug1; aug2] (the reference's single concatenated batch, so BN sees all three), and

    L = CE(f(x), y) + 12 · JSD(p_clean, p_aug1, p_aug2),
    JSD = (KL(p_clean || M) + KL(p_aug1 || M) + KL(p_aug2 || M)) / 3,  M = clamp(mean of the three, 1e-7, 1)

with the KLs batch-mean, as the reference `cifar.py`. `jsd: false` trains on one AugMix view
with CE only. Views: `width` 3 chains of `depth` ops (-1: 1 to 3 at random), ops drawn from
autocontrast, equalize, posterize, rotate, solarize, shear x/y, translate x/y at `severity` 3
(the reference's CIFAR default; EWS's script uses 5), mixed with Dirichlet/Beta(`alpha` = 1)
weights (see augmix_ops.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .augmix_ops import augment_and_mix
from .base import METHODS, Method, StepContext, StepOutput, layout_like


def jensen_shannon(*logits: torch.Tensor) -> torch.Tensor:
    """AugMix's consistency loss: the mean over the views of KL(p_view || M), batch-mean."""
    probabilities = [F.softmax(z.float(), 1) for z in logits]
    log_mixture = torch.clamp(sum(probabilities) / len(probabilities), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probabilities) / len(probabilities)


@dataclass(frozen=True)
class AugMixOptions:
    severity: float = 3.0
    width: int = 3
    depth: int = -1
    alpha: float = 1.0
    jsd: bool = True
    jsd_weight: float = 12.0

    def __post_init__(self):
        if not 0.1 < self.severity <= 10:
            raise ConfigError(f"method.severity must lie in (0.1, 10], got {self.severity}.")
        if self.width < 1 or self.depth == 0 or self.depth < -1 or self.depth > 3:
            raise ConfigError(f"method.width must be at least 1 and method.depth 1 to 3 (or -1 for random), got "
                              f"{self.width} and {self.depth}.")
        if self.alpha <= 0 or self.jsd_weight < 0:
            raise ConfigError(f"method.alpha must be positive and method.jsd_weight non-negative, got {self.alpha} "
                              f"and {self.jsd_weight}.")


@METHODS.register()
class AugMix(Method):
    name = "augmix"
    Options = AugMixOptions

    def views(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        o = self.options
        return augment_and_mix(x, generator, severity=o.severity, width=o.width, depth=o.depth, alpha=o.alpha)

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        if not self.options.jsd:
            augmented = self.views(x, ctx.generator)
            logits = model(augmented)
            return StepOutput(ctx.cross_entropy(logits, y), logits, views=((augmented, logits, 1.0),))
        batch = layout_like(torch.cat([x, self.views(x, ctx.generator), self.views(x, ctx.generator)]), x)
        logits = model(batch)
        clean, aug1, aug2 = logits.split(len(x))
        ce = ctx.cross_entropy(clean, y)
        consistency = jensen_shannon(clean, aug1, aug2)
        return StepOutput(ce + self.options.jsd_weight * consistency, clean,
                          {"clean_loss": ce.detach(), "jsd": consistency.detach()}, views=((batch, logits, 1.0),))
