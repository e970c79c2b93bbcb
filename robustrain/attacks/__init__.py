"""Adversarial attacks; each takes any `x -> logits` module on [0, 1] images."""

from .apgd import APGD
from .apgd_t import APGDT
from .autoattack import AutoAttack, AutoAttackResult
from .base import Attack, AttackResult, running_mode
from .checks import Flag
from .correct import Correct
from .fab import FAB
from .fgsm import FGSM
from .pgd import PGD
from .square import Square

__all__ = ["APGD", "APGDT", "Attack", "AttackResult", "AutoAttack", "AutoAttackResult", "Correct", "FAB", "FGSM",
           "Flag", "PGD", "Square", "running_mode"]
