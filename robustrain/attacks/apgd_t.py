"""APGD-T (Croce & Hein, 2020): APGD on the targeted DLR loss, one pass per target class.

The targets of an image are the classes its clean logits rank 2nd, 3rd, ...; each pass
attacks only the images that no earlier pass has fooled. AutoAttack's standard version
uses 9 targets (fewer where the dataset has fewer classes) and 100 steps.
"""

from __future__ import annotations

from functools import partial
from ..errors import ConfigError
from .apgd import APGD
from .base import ModelMode
from .losses import targeted_dlr
from .norms import Norm


def _target_loss(rank: int):
    """Factory of the targeted DLR toward the class ranked `rank` (2 = runner-up) by the clean logits."""
    def make(clean_logits):
        target = clean_logits.argsort(dim=1, descending=True)[:, rank - 1]
        return partial(targeted_dlr, target=target)
    return make


class APGDT(APGD):
    def __init__(self, eps: float, steps: int = 100, *, norm: Norm = "linf", targets: int = 9,
                 restarts: int = 1, rho: float = 0.75, model_mode: ModelMode = "eval"):
        super().__init__(eps, steps, norm=norm, loss="dlr", restarts=restarts, rho=rho, model_mode=model_mode)
        if targets < 1:
            raise ConfigError(f"APGD-T needs at least one target class, got {targets}.")
        self.targets = targets

    def perturb(self, model, x, y, generator):
        def passes(num_classes: int):
            if num_classes < 4:
                raise ConfigError(f"the targeted DLR loss needs at least 4 classes, the model has {num_classes}.")
            ranks = range(2, min(self.targets, num_classes - 1) + 2)
            return [_target_loss(rank) for rank in ranks for _ in range(self.restarts)]

        return self.attack_robust(model, x, y, generator, passes)
