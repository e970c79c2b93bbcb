"""Typed configuration: YAML or dict in, validated dataclasses out.

Every section is a dataclass; unknown keys, wrong types and bad values are reported as
one sentence naming the key. Floats may be written as fractions ("8/255"), which is how
the literature writes radii and step sizes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError


def parse_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}.")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            pass
    raise ConfigError(f"{key} must be a number or a fraction such as 8/255, got {value!r}.")


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` converted to the type `annotation` describes, or a ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(value, option, key)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {list(args)}, got {value!r}.")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}.")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key} must have {len(args)} entries, got {len(value)}.")
            return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        converted = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}.")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    if annotation is float:
        return parse_float(value, key)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}.")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}.")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}.")
        return value
    return value


def from_dict(cls: type, data: Any, key: str = "config"):
    """Build dataclass `cls` from a mapping, checking every key and value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{key} must be a mapping of options, got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown option '{_join(key, unknown[0])}'; options here are {sorted(fields)}.")
    values = {name: coerce(value, hints[name], _join(key, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}: {error}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain YAML/JSON-ready values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path} ({error.strerror}).") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML ({error}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options at the top level.")
    return data


def set_dotted(data: dict, assignment: str) -> None:
    """Apply an override `a.b.c=value` (value read as YAML) to a nested dict in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.subkey=value.")
    dotted, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise ConfigError(f"the value of {dotted.strip()} ({raw!r}) is not valid YAML ({problem}).") from None
    keys = dotted.strip().split(".")
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {k} is a value, not a section.")
        node = child
    node[keys[-1]] = value


def _join(prefix: str, name: str) -> str:
    return name if prefix == "config" else f"{prefix}.{name}"
