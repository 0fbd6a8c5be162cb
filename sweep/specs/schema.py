"""The machinery of typed specs: strict parsing from the composed config, and declared identity.

A spec is a dataclass whose every field is declared with ``semantic(...)`` (the field
changes what a job computes, so it is part of the job's id) or ``incidental(...)``
(where or how the job runs: paths, cadence, batching, resources; never part of the
id). ``Spec.parse(data, where)`` builds one from plain config data and refuses, as a
``SweepError`` naming the dotted field (``train.stages.0.lr``) and the fix:

* unknown keys (with close names), missing required keys;
* wrong types: ``bool``/``int``/``float``/``str`` are exact (``steps=1.5`` is not an
  int, ``lr=inf`` is not a finite float), ``Literal`` and ``choices=`` are closed sets;
* values out of range (``check=positive`` ...), then the spec's own ``check()`` for
  rules that span fields.

Unions of specs are told apart by a tag field (``kind`` by default, ``name`` for
launchers): each variant's tag is its field's default. ``identity()`` is the nested
dict of semantic fields that ``sweep.ids`` hashes; ``to_dict()`` is everything, for
``spec.json`` and MLflow params.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from sweep.errors import SweepError, close_names

IDENTITY = "identity"
S = TypeVar("S", bound="Spec")


@dataclasses.dataclass(frozen=True)
class Check:
    """A range rule: ``ok(value)`` must hold; ``wants`` says what it needs, for the message."""

    wants: str
    ok: Callable[[Any], bool]


positive = Check("> 0", lambda x: x > 0)
non_negative = Check(">= 0", lambda x: x >= 0)
fraction = Check("in [0, 1)", lambda x: 0 <= x < 1)
probability = Check("in (0, 1]", lambda x: 0 < x <= 1)
non_empty = Check("non-empty", lambda x: len(x) > 0)


def at_least(low: float) -> Check:
    return Check(f">= {low}", lambda x: x >= low)


def between(low: float, high: float) -> Check:
    return Check(f"in [{low}, {high}]", lambda x: low <= x <= high)


def _field(identity: bool, default: Any, factory: Any, check: Check | None, choices: Sequence[Any] | None,
           item: type | None) -> Any:
    meta = {IDENTITY: identity, "check": check, "choices": tuple(choices) if choices else None, "item": item}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def semantic(default: Any = MISSING, *, factory: Any = MISSING, check: Check | None = None,
             choices: Sequence[Any] | None = None, item: type | None = None) -> Any:
    """A field that changes what the job computes: part of its identity (its id)."""
    return _field(True, default, factory, check, choices, item)


def incidental(default: Any = MISSING, *, factory: Any = MISSING, check: Check | None = None,
               choices: Sequence[Any] | None = None, item: type | None = None) -> Any:
    """A field that says where or how a job runs (paths, cadence, batching, cost inputs): not in its id.

    ``item``: the spec type of a ``dict[str, Any]`` field's values, for schemas Hydra also reads
    (OmegaConf cannot type a dict of dataclasses that overrides may add keys to).
    """
    return _field(False, default, factory, check, choices, item)


def join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


class Spec:
    """Base of every typed spec (a dataclass); see the module docstring."""

    TAG: ClassVar[str] = "kind"  # the field that tells variants of a union apart

    @classmethod
    def parse(cls: type[S], data: Any, where: str) -> S:
        """A ``cls`` from plain config data; every problem is a ``SweepError`` naming its field."""
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        if not isinstance(data, Mapping):
            raise SweepError(where or "config", f"must be a mapping with keys {sorted(fields)}, got {data!r}",
                             f"write {where or 'it'} as {{key: value, ...}}")
        unknown = [k for k in data if k not in fields]
        if unknown:
            key = str(unknown[0])
            raise SweepError(join(where, key), f"unknown key.{close_names(key, fields)}",
                             f"remove it, or use one of the keys of {where or 'the config'}: {', '.join(sorted(fields))}")
        hints = type_hints(cls)
        values: dict[str, Any] = {}
        for name, f in fields.items():
            here = join(where, name)
            if name not in data:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise SweepError(here, "is required and missing", f"set {here}=...")
                continue
            values[name] = _checked(parse_value(hints[name], data[name], here, f.metadata), here, f.metadata)
        obj = cls(**values)
        obj.check(where)
        return obj

    def check(self, where: str) -> None:
        """Rules across fields; subclasses raise ``SweepError`` naming the field."""

    def identity(self) -> dict[str, Any]:
        """The semantic fields, nested: what the job's id hashes."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if IDENTITY not in f.metadata:
                raise TypeError(f"{type(self).__name__}.{f.name} declares neither semantic() nor incidental()")
            if f.metadata[IDENTITY]:
                out[f.name] = _plain(getattr(self, f.name), identity=True)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every field, nested, as plain JSON-able data."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _plain(value: Any, identity: bool = False) -> Any:
    if isinstance(value, Spec):
        return value.identity() if identity else value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, identity) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, identity) for v in value]
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _checked(value: Any, where: str, meta: Mapping[str, Any]) -> Any:
    choices, check = meta.get("choices"), meta.get("check")
    if choices and value not in choices:
        raise SweepError(where, f"is {value!r}, not one of {list(choices)}.{close_names(str(value), map(str, choices))}",
                         f"set {where} to one of {', '.join(map(str, choices))}")
    if check is not None and value is not None and not check.ok(value):
        raise SweepError(where, f"must be {check.wants}, got {value!r}", f"set {where} to a value {check.wants}")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def tag_of(cls: type) -> Any:
    """The tag value of a union variant: the default of its tag field."""
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == cls.TAG:  # type: ignore[attr-defined]
            return f.default
    raise TypeError(f"{cls.__name__} has no tag field {cls.TAG!r}")  # type: ignore[attr-defined]


def parse_value(tp: Any, value: Any, where: str, meta: Mapping[str, Any] | None = None) -> Any:
    """``value`` checked (and converted: lists to tuples where the type says tuple) against type ``tp``."""
    meta = meta or {}
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Spec):
        return tp.parse(value, where)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None:
            if len(options) < len(args):
                return None
            raise SweepError(where, "must not be null", f"set {where} to a value")
        if len(options) == 1:
            return parse_value(options[0], value, where, meta)
        if all(isinstance(a, type) and issubclass(a, Spec) for a in options):
            return _variant(options, value, where)
        raise TypeError(f"{where}: unsupported union {tp}")
    if value is None:
        raise SweepError(where, "must not be null", f"set {where} to a {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise SweepError(where, f"is {value!r}, not one of {list(args)}.{close_names(str(value), map(str, args))}",
                             f"set {where} to one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise SweepError(where, f"must be true or false, got {value!r}", f"set {where}=true or {where}=false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SweepError(where, f"must be an integer, got {value!r}", f"set {where} to a whole number")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SweepError(where, f"must be a finite number, got {value!r}", f"set {where} to a number such as 1e-3")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SweepError(where, f"must be a string, got {value!r}", f"quote it: {where}='...'")
        return value
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
            raise SweepError(where, f"must be a list, got {value!r}", f"write {where}=[a,b,...]")
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        if fixed and len(value) != len(args):
            raise SweepError(where, f"must have {len(args)} items, got {list(value)!r}", f"write {where}=[{', '.join('...' for _ in args)}]")
        types_ = args if fixed else [args[0] if args else Any] * len(value)
        items = [parse_value(t, v, join(where, i)) for i, (t, v) in enumerate(zip(types_, value))]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise SweepError(where, f"must be a mapping, got {value!r}", f"write {where} as {{key: value}}")
        inner = meta.get("item") or (args[1] if len(args) == 2 else Any)
        return {str(k): parse_value(inner, v, join(where, k)) for k, v in value.items()}
    raise TypeError(f"{where}: unsupported annotation {tp}")


def _variant(options: Sequence[type[Spec]], value: Any, where: str) -> Spec:
    tag = options[0].TAG
    by_tag = {str(tag_of(cls)): cls for cls in options}
    got = value.get(tag) if isinstance(value, Mapping) else None
    if got is None:
        raise SweepError(join(where, tag), f"is missing; it says which kind of {where} this is",
                         f"set {join(where, tag)} to one of {', '.join(by_tag)}")
    if str(got) not in by_tag:
        raise SweepError(join(where, tag), f"unknown {tag} {got!r}.{close_names(str(got), by_tag)}",
                         f"use one of {', '.join(by_tag)}")
    return by_tag[str(got)].parse(value, where)


def spec_types(root: type) -> list[type[Spec]]:
    """Every spec type reachable from ``root``'s field annotations (for the identity test)."""
    seen: list[type[Spec]] = []

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, Spec) and dataclasses.is_dataclass(tp):
            if tp in seen:
                return
            seen.append(tp)
            hints = type_hints(tp)
            for f in dataclasses.fields(tp):
                walk(hints[f.name])
                if f.metadata.get("item"):
                    walk(f.metadata["item"])
            return
        for a in get_args(tp):
            walk(a)

    walk(root)
    return seen


def declares(root: type, path: str) -> bool:
    """Whether the dotted ``path`` (``eval.batch_size``, ``train.stages.0.lr``) names a field of spec type ``root``."""
    current: list[Any] = [root]
    for part in path.split("."):
        nxt: list[Any] = []
        for tp in current:
            for option in _options(tp):
                if isinstance(option, type) and issubclass(option, Spec) and dataclasses.is_dataclass(option):
                    fields = {f.name: f for f in dataclasses.fields(option)}
                    if part in fields:
                        nxt.append(fields[part].metadata.get("item") or type_hints(option)[part])
                elif get_origin(option) in (dict, Mapping) and len(get_args(option)) == 2:
                    nxt.append(get_args(option)[1])
                elif get_origin(option) in (list, tuple, Sequence) and part.isdigit():
                    nxt.append(get_args(option)[0])
        if not nxt:
            return False
        current = nxt
    return True


def _options(tp: Any) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [a for a in get_args(tp) if a is not type(None)]
    return [tp]
