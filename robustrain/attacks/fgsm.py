"""Fast gradient sign method (Goodfellow et al., 2015) and its random-start form (Wong et al., 2020).

FGSM:     x' = clip(x + eps * sign(grad L(x)))
FGSM-RS:  d ~ U(-eps, eps);  x' = clip(x + Proj_eps(d + alpha * sign(grad L(x + d))))
Both are one step of PGD, which is how they are built here.
"""

from __future__ import annotations

from .base import ModelMode
from .pgd import PGD


class FGSM(PGD):
    """One signed-gradient step; with `random_start`, Wong et al.'s FGSM-RS with step
    `alpha` (default 1.25 * eps, their recommendation)."""

    def __init__(self, eps: float, *, random_start: bool = False, alpha: float | None = None,
                 model_mode: ModelMode = "eval"):
        if alpha is None:
            alpha = 1.25 * eps if random_start else eps
        super().__init__(eps, alpha, steps=1, norm="linf", loss="ce",
                         random_start="uniform" if random_start else "none", model_mode=model_mode)
