"""Node parameters: constraint types for `Node.Params` structs and one-line errors.

A node declares its parameters as a msgspec Struct; constraints go on the types, so a
graph is checked before any process starts (`sensorfuse graph check` and `run` share
the check, `sensorfuse.engine.graph.plan`)::

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        rate_hz: PositiveFloat = 30.0
        count: Count = 0

Checks that involve several fields go in ``__post_init__`` and raise `param_error`.
A failed conversion becomes one line naming the field, what it expects and the value
given: ``rate_hz: expected a number > 0, got -5``.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

import msgspec
from msgspec import inspect as mi

from sensorfuse.engine.errors import StartupError, UsageError

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
#: a count where 0 has a meaning ("no limit", "none")
Count = Annotated[int, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"field `(?P<field>[^`]*)`")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def param_error(field: str, expected: str, value: Any) -> ValueError:
    """The error a ``__post_init__`` raises, in the same words as a type mismatch."""
    return ValueError(f"{field}: expected {expected}, got {show(value)}")


class ParamsError(StartupError):
    """Parameters that do not fit a node's `Params` (one line: field, expectation, value).
    A StartupError: a node process given them fails for good, without restarts."""


def require_file(field: str, path: str | os.PathLike[str], what: str = "file") -> None:
    """For `Node.check` hooks: UsageError naming the parameter unless `path` is a file."""
    if not os.path.isfile(path):
        reason = "is a directory" if os.path.isdir(path) else "does not exist"
        raise UsageError(f"{field}: {what} {str(path)!r} {reason}")


def parse(params_type: type, raw: dict[str, Any] | None) -> Any:
    """`raw` converted to `params_type`; ParamsError with one line naming field and value."""
    try:
        return msgspec.convert(raw or {}, type=params_type)
    except msgspec.ValidationError as exc:
        raise ParamsError(explain(params_type, raw or {}, exc)) from None


def explain(params_type: type, raw: Any, exc: msgspec.ValidationError, *, what: str = "parameter") -> str:
    """msgspec's message (``Expected `float` > 0.0 - at `$.rate_hz```) in a user's words."""
    m = _AT.match(str(exc).splitlines()[0] if str(exc) else "")
    message, path = (m.group("msg"), m.group("path")) if m else (str(exc), None)
    names, info, value = _walk(mi.type_info(params_type), raw, path or "")
    if not message.startswith(("Expected ", "Invalid ", "Object ")):
        # from a __post_init__, already "field: expected ..., got ...": say where the struct is
        return _join(names, message)
    field = _FIELD.search(message)
    if message.startswith("Object contains unknown field") and field:
        known = [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else []
        return f"{_join(names, field['field'])}: unknown {what} (known: {', '.join(known) or 'none'})"
    if message.startswith("Object missing required field") and field:
        return f"{_join(names, field['field'])}: required, not given"
    where = f"{_join(names)}: " if names else ""
    return f"{where}expected {describe(info)}, got {show(value)}"


def _walk(info: mi.Type, raw: Any, path: str) -> tuple[list[str], mi.Type, Any]:
    """Follow msgspec's error path through the type and the raw value. Dict keys show as
    ``[...]`` in the path; the key is found again as the first entry that fails."""
    names: list[str] = []
    for name, index in _SEGMENT.findall(path):
        info = _unwrap(info, raw)
        if name and isinstance(info, mi.StructType):
            info = next((f.type for f in info.fields if f.encode_name == name), mi.AnyType())
            raw = raw.get(name) if isinstance(raw, dict) else None
            names.append(name)
        elif index == "..." and isinstance(info, mi.DictType):
            key = _failing_key(info.value_type, raw)
            info, raw = info.value_type, raw.get(key) if isinstance(raw, dict) else None
            names.append(str(key))
        elif index.isdigit():
            i = int(index)
            if isinstance(info, mi.TupleType):
                info = info.item_types[i] if i < len(info.item_types) else mi.AnyType()
            elif isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
                info = info.item_type
            raw = raw[i] if isinstance(raw, list) and i < len(raw) else None
            names[-1:] = [f"{names[-1] if names else ''}[{i}]"]
    return names, info, raw


def _unwrap(info: mi.Type, raw: Any) -> mi.Type:
    """The member of a union that a mapping value was converted as."""
    if isinstance(info, mi.UnionType):
        for member in info.types:
            if isinstance(member, (mi.StructType, mi.DictType)) and isinstance(raw, dict):
                return member
            if isinstance(member, (mi.ListType, mi.TupleType)) and isinstance(raw, list):
                return member
    return info


def _failing_key(value_type: mi.Type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        return "..."
    for key, value in raw.items():
        struct = _unwrap(value_type, value)
        if isinstance(struct, mi.StructType) and isinstance(value, dict):
            try:
                msgspec.convert(value, type=struct.cls)
            except msgspec.ValidationError:
                return key
    return "..."


def _join(names: list[str], last: str | None = None) -> str:
    return ".".join(names + ([last] if last else []))


def describe(info: mi.Type) -> str:
    """What a value of this type looks like, for a user: ``a number > 0 or 'max'``."""
    if isinstance(info, mi.UnionType):
        return " or ".join(describe(t) for t in info.types)
    if isinstance(info, mi.LiteralType):
        values = ", ".join(show(v) for v in info.values)
        return values if len(info.values) == 1 else f"one of {values}"
    if isinstance(info, (mi.IntType, mi.FloatType)):
        bounds = [f"{op} {_num(getattr(info, attr))}" for attr, op in
                  (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if getattr(info, attr) is not None]
        return ("an integer" if isinstance(info, mi.IntType) else "a number") + \
            (" " + " and ".join(bounds) if bounds else "")
    if isinstance(info, mi.StrType):
        return "a non-empty string" if info.min_length else "a string"
    if isinstance(info, mi.TupleType):
        return f"a list of {len(info.item_types)} items"
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        # the items' own constraints are named when an item fails (`shape[1]: expected ...`)
        if info.min_length:
            return "a non-empty list" if info.min_length == 1 else f"a list of at least {info.min_length} items"
        return "a list"
    simple = {mi.BoolType: "true or false", mi.NoneType: "null", mi.DictType: "a mapping",
              mi.StructType: "a mapping", mi.AnyType: "any value"}
    return simple.get(type(info), type(info).__name__)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def show(value: Any) -> str:
    """A value as the user wrote it in YAML (true, null, 'text', 5)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
