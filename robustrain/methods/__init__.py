"""Training methods, one file each, behind `Method`."""

from __future__ import annotations

from ..config import from_dict
from ..errors import ConfigError
from .adcorda import AdCorDA
from .augmix import AugMix
from .auxiliary import Auxiliary
from .ews import EWS
from .base import Method, StepContext, StepOutput, Threat
from .fast_at import FastAT
from .oat import OAT
from .pgd_at import PGDAT
from .standard import Standard
from .trades import TRADES

METHODS: dict[str, type[Method]] = {m.name: m for m in (Standard, PGDAT, TRADES, FastAT, OAT, AdCorDA, Auxiliary, AugMix, EWS)}


def create_method(name: str, options: dict | None, threat: Threat) -> Method:
    """A method by name, its options checked against the method's own option dataclass."""
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; available methods are {sorted(METHODS)}.")
    cls = METHODS[name]
    return cls(from_dict(cls.Options, options or {}, "method"), threat)


def method_from_section(section: dict, threat: Threat) -> Method:
    """A method from a configuration section: {"name": ..., **its options}."""
    return create_method(section["name"], {k: v for k, v in section.items() if k != "name"}, threat)


__all__ = ["METHODS", "Method", "StepContext", "StepOutput", "Threat", "create_method", "method_from_section"]
