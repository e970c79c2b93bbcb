"""One registry shape for every list a user picks from by name: models, methods, attacks, datasets,
corruptions, schedules and suites.

Each entry is registered next to its definition, as timm's `register_model` does:

    METHODS = Registry("method")

    @METHODS.register()            # under the class's `name`
    class PGDAT(Method): ...

    MODELS.add("resnet18", partial(ResNet, BasicBlock, (2, 2, 2, 2)))

`robustrain list`, the CLI's choices and help, and every "unknown X" error read the same registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in the order they were registered.

    kind: what an entry is, for messages ("model"). error: the exception an unknown name raises
    (one sentence naming it and the names there are)."""

    def __init__(self, kind: str, error: type[Exception] = ConfigError):
        self.kind, self.error = kind, error
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice.")
        self._entries[name] = entry
        return entry

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """A decorator registering what it decorates under `name` (default: its `name` attribute,
        else its `__name__`)."""
        def decorate(entry: T) -> T:
            return self.add(name or getattr(entry, "name", None) or entry.__name__, entry)
        return decorate

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; available {self.kind}s are {self.names()}.")
        return self._entries[name]

    __getitem__ = get

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
