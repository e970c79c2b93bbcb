"""AutoAttack (Croce & Hein, ICML 2020): an ensemble of attacks, worst case per image.

Each attack runs only on the images that every earlier attack failed to break, and an
image counts as robust only if all of them fail. Versions, with the reference settings:
    standard  APGD-CE (100 steps), APGD-T (9 targets x 100 steps), FAB-T (9 targets x 100
              steps), Square (5000 queries, the window schedule not rescaled); one restart each
    plus      APGD-CE and APGD-DLR (5 restarts each), FAB (untargeted, 5 restarts), Square
              (5000 queries), APGD-T and FAB-T (9 targets each)
    custom    any named attacks of the list above, with those settings, or any Attack objects
              (version="custom", as the reference requires with a list of attacks)
Targeted attacks use fewer targets where the model has fewer than 10 classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from .apgd import APGD
from .apgd_t import APGDT
from .base import Attack, AttackResult, ModelMode, WorstCase, attacking, check_batch
from .fab import FAB
from .norms import Norm
from .square import Square


def named_attack(name: str, eps: float, norm: Norm, restarts: int = 1, model_mode: ModelMode = "eval") -> Attack:
    """An attack of the AutoAttack family with the reference settings, run in `model_mode`."""
    mode = {"model_mode": model_mode}
    factories = {
        "apgd-ce": lambda: APGD(eps, 100, norm=norm, loss="ce", restarts=restarts, **mode),
        "apgd-dlr": lambda: APGD(eps, 100, norm=norm, loss="dlr", restarts=restarts, **mode),
        "apgd-t": lambda: APGDT(eps, 100, norm=norm, targets=9, **mode),
        "fab": lambda: FAB(eps, 100, norm=norm, targeted=False, restarts=restarts, **mode),
        "fab-t": lambda: FAB(eps, 100, norm=norm, targeted=True, targets=9, **mode),
        # the reference builds its Square with resc_schedule=False, in every version
        "square": lambda: Square(eps, 5000, norm=norm, rescale_schedule=False, **mode),
    }
    if name not in factories:
        raise ConfigError(f"unknown AutoAttack component '{name}'; choose from {sorted(factories)}.")
    return factories[name]()


VERSIONS = {
    "standard": [("apgd-ce", 1), ("apgd-t", 1), ("fab-t", 1), ("square", 1)],
    "plus": [("apgd-ce", 5), ("apgd-dlr", 5), ("fab", 5), ("square", 1), ("apgd-t", 1), ("fab-t", 1)],
}


@dataclass
class AutoAttackResult(AttackResult):
    """An AttackResult with the clean accuracy and the robust accuracy after each component."""

    clean_accuracy: float
    robust_accuracy_after: dict[str, float]


class AutoAttack(Attack):
    """version "standard" or "plus"; or version "custom" with `attacks`, a list of component names
    or (name, Attack) pairs. `batch_size` bounds the images attacked at once. `model_mode` applies
    to AutoAttack's own passes and to every component it builds by name (an Attack object passed
    in keeps its own)."""

    def __init__(self, eps: float, *, norm: Norm = "linf", version: Literal["standard", "plus", "custom"] = "standard",
                 attacks: Sequence[str | tuple[str, Attack]] | None = None, batch_size: int = 500,
                 model_mode: ModelMode = "eval"):
        super().__init__(model_mode)
        if attacks is not None and version != "custom":
            raise ConfigError(f"AutoAttack version {version!r} fixes its attacks; pass version='custom' with attacks.")
        if attacks is None:
            if version not in VERSIONS:
                raise ConfigError(f"AutoAttack version must be one of {sorted(VERSIONS)}, got {version!r}.")
            self.attacks = [(name, named_attack(name, eps, norm, restarts, model_mode))
                            for name, restarts in VERSIONS[version]]
            self.version = version
        else:
            self.attacks = [(a, named_attack(a, eps, norm, model_mode=model_mode)) if isinstance(a, str) else tuple(a)
                            for a in attacks]
            self.version = "custom"
        if not self.attacks:
            raise ConfigError("AutoAttack needs at least one attack.")
        self.eps, self.norm, self.batch_size = eps, norm, batch_size

    def perturb(self, model, x, y, generator):
        return self.run(model, x, y, generator).adversarial

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator | None = None) -> AutoAttackResult:
        """Adversarial images, the per-image robust flags and the robust accuracy after each attack."""
        check_batch(x, y)
        with attacking(model, self.model_mode):
            with torch.no_grad():
                predicted = [model(x[i:i + self.batch_size]).argmax(1) for i in range(0, len(x), self.batch_size)]
                robust = torch.cat(predicted) == y
            record = WorstCase(x, robust)
            clean = robust.float().mean().item()
            after = {}
            for name, attack in self.attacks:
                remaining = record.remaining()
                for start in range(0, remaining.numel(), self.batch_size):
                    index = remaining[start:start + self.batch_size]
                    found = attack(model, x[index], y[index], generator)
                    with torch.no_grad():
                        record.update(index, found, model(found).argmax(1) != y[index])
                after[name] = record.robust.float().mean().item()
        return AutoAttackResult(record.adversarial, ~record.robust, clean, after)
