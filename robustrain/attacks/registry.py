"""The attacks an evaluation suite names ("fgsm", "pgd20", "autoattack"): each builds its attack for
a threat model and says what the results file records about it (the attack's part of a measurement's
protocol) and how reports call it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError
from ..registry import Registry
from .autoattack import AutoAttack
from .base import Attack
from .fgsm import FGSM
from .pgd import PGD


@dataclass(frozen=True)
class SuiteAttack:
    """label: how reports call it. build(eps, norm) -> (the attack, its settings for the protocol)."""

    label: str
    build: Callable[[float, str], tuple[Attack, dict]]


ATTACKS: Registry[SuiteAttack] = Registry("suite attack")


def build_attack(name: str, eps: float, norm: str) -> tuple[Attack, dict]:
    """The suite attack `name` for the threat (eps, norm), and its protocol entry."""
    attack, details = ATTACKS.get(name).build(eps, norm)
    return attack, {"kind": "attack", "norm": norm, "eps": eps, **details}


def _fgsm(eps: float, norm: str) -> tuple[Attack, dict]:
    if norm != "linf":
        raise ConfigError(f"fgsm is an L-infinity attack; the threat model's norm is {norm!r}")
    return FGSM(eps), {"attack": "fgsm", "step_size": eps}


def _pgd20(eps: float, norm: str) -> tuple[Attack, dict]:
    return PGD(eps, eps / 4, 20, norm=norm), {"attack": "pgd", "steps": 20, "step_size": eps / 4, "restarts": 1,
                                              "random_start": "uniform", "loss": "ce"}


def _autoattack(eps: float, norm: str) -> tuple[Attack, dict]:
    attack = AutoAttack(eps, norm=norm, version="standard")
    return attack, {"attack": "autoattack", "version": "standard", "components": [n for n, _ in attack.attacks]}


# In the order reports list them, weakest first.
ATTACKS.add("fgsm", SuiteAttack("FGSM", _fgsm))
ATTACKS.add("pgd20", SuiteAttack("PGD-20", _pgd20))
ATTACKS.add("autoattack", SuiteAttack("AutoAttack", _autoattack))
