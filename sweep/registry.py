"""One registry type for every plug-in: launchers, job kinds, benchmarks, compressors.

    LAUNCHERS = Registry("launcher", {"local": "launchers.local:LocalLauncher", ...}, field="launcher")
    cls = LAUNCHERS.load("local")            # imported now, checked against ``base``
    LAUNCHERS.load("locl")                   # SweepError: unknown launcher 'locl'. Did you mean local?

Entries are lazy ``"module:attr"`` strings, so listing the names imports nothing
(``ray`` and ``submitit`` are imported only when their launcher is chosen). A
miss is a ``SweepError`` naming the config field, suggesting close names and
listing the choices; an entry that does not resolve to a subclass of ``base`` is
a ``SweepError`` too, so a broken plug-in is found at plan time.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from sweep.errors import SweepError, close_names

T = TypeVar("T")


def import_target(target: str) -> Any:
    """``"pkg.module:attr"`` (or ``"pkg.module.attr"``) -> the object."""
    module, sep, name = target.partition(":")
    if not sep:
        module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


class Registry(Generic[T]):
    """Names -> lazy ``"module:attr"`` targets of one kind of plug-in."""

    def __init__(self, what: str, entries: Mapping[str, str], *, field: str, base: type | None = None) -> None:
        self.what, self.field, self.base = what, field, base
        self._entries = dict(entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def target(self, name: str, field: str | None = None) -> str:
        """The ``"module:attr"`` string of ``name``, or a SweepError with close names."""
        if name not in self._entries:
            raise SweepError(field or self.field, f"unknown {self.what} {name!r}.{close_names(str(name), self._entries)}",
                             f"use one of {', '.join(self.names())}")
        return self._entries[name]

    def load(self, name: str, field: str | None = None) -> T:
        """The object registered under ``name``, imported now."""
        return self.load_target(self.target(name, field), field, name)

    def load_target(self, target: str, field: str | None = None, name: str | None = None) -> T:
        """Import ``target`` (a registered value, or a user's own ``module:attr``) and check it against ``base``."""
        label = f"{self.what} {name or target!r}"
        try:
            obj = import_target(target)
        except (ImportError, AttributeError, ValueError) as e:
            near = close_names(target, self._entries.values())
            raise SweepError(field or self.field, f"{label}: cannot import {target!r} ({type(e).__name__}: {e}).{near}",
                             f"write 'package.module:Name' of an importable class, or use one of {', '.join(self.names())}") from None
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise SweepError(field or self.field, f"{label}: {target} is not a {self.base.__name__}",
                             f"point it at a subclass of {self.base.__module__}.{self.base.__name__}")
        return obj
