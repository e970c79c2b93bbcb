"""Standard training: minimise cross-entropy on the (augmented) clean images.

views: optional corrupted views used as plain data augmentation (the baseline Auxiliary Training
is compared with): each image of a batch is replaced by one of (itself, view_1, ..., view_K),
drawn uniformly per image. See methods/views.py for the names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..host import to_device
from .base import METHODS, Method, StepContext, StepOutput
from .views import make_view


@dataclass(frozen=True)
class StandardOptions:
    views: tuple[str, ...] = ()


@METHODS.register()
class Standard(Method):
    name = "standard"
    Options = StandardOptions

    def __init__(self, options: StandardOptions, threat):
        super().__init__(options, threat)
        self.view_fns = [make_view(v) for v in options.views]

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        if self.view_fns:
            x = self.augment(x, ctx.generator)
        logits = model(x)
        return StepOutput(ctx.cross_entropy(logits, y), logits, views=((x, logits, 1.0),))

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        choice = to_device(torch.randint(len(self.view_fns) + 1, (len(x),), generator=generator), x.device)
        out = x.clone()
        for index, view in enumerate(self.view_fns, start=1):
            rows = (choice == index).nonzero().flatten()
            if len(rows):
                out[rows] = view(x[rows], generator)
        return out
