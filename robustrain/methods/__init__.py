"""Training methods, one file each, behind `Method`."""

from __future__ import annotations

from ..config import from_dict
from . import standard, pgd_at, trades, fast_at, oat, adcorda, auxiliary, augmix, ews  # noqa: F401 (each registers)
from .base import METHODS, Method, StepContext, StepOutput, Threat


def create_method(name: str, options: dict | None, threat: Threat) -> Method:
    """A method by name, its options checked against the method's own option dataclass."""
    cls = METHODS.get(name)
    return cls(from_dict(cls.Options, options or {}, "method"), threat)


def method_from_section(section: dict, threat: Threat) -> Method:
    """A method from a configuration section: {"name": ..., **its options}."""
    return create_method(section["name"], {k: v for k, v in section.items() if k != "name"}, threat)


__all__ = ["METHODS", "Method", "StepContext", "StepOutput", "Threat", "create_method", "method_from_section"]
