"""Convert records to the plain dicts fastavro writes, and back.

Each record class gets a plan built once from its type hints, so the per-message work is a
loop over fields with identity fields skipped.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from notifier.contracts.records import Record

R = TypeVar("R", bound=Record)
Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _converters(tp: Any) -> tuple[Convert, Convert]:
    """(to_avro, from_avro) for one annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        to_inner, from_inner = _converters(args[0])
        if to_inner is _identity and from_inner is _identity:
            return _identity, _identity
        return (
            lambda v: None if v is None else to_inner(v),
            lambda v: None if v is None else from_inner(v),
        )
    if origin is list:
        to_item, from_item = _converters(typing.get_args(tp)[0])
        if to_item is _identity and from_item is _identity:
            return list, list
        return (lambda v: [to_item(i) for i in v], lambda v: [from_item(i) for i in v])
    if origin is dict:
        return dict, dict
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return (lambda v: v.value, _enum_reader(tp))
    if isinstance(tp, type) and issubclass(tp, Record):
        record_type = tp
        return (to_avro, lambda v: from_avro(record_type, v))
    return _identity, _identity


def _enum_reader(enum_type: type[enum.Enum]) -> Convert:
    """The member of `enum_type` for a symbol, from a dict: calling the enum class costs
    ten times as much (about 1.2 us) and it runs for every enum field of every record
    decoded. A symbol not known here goes to the class, which raises as before."""
    members = {member.value: member for member in enum_type}

    def read(value: Any) -> Any:
        member = members.get(value)
        return member if member is not None else enum_type(value)

    return read


_PLANS: dict[type[Record], tuple[tuple[str, Convert, Convert], ...]] = {}


def _plan(cls: type[Record]) -> tuple[tuple[str, Convert, Convert], ...]:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    hints = typing.get_type_hints(cls)
    plan = tuple((f.name, *_converters(hints[f.name])) for f in dataclasses.fields(cls))
    _PLANS[cls] = plan
    return plan


def to_avro(record: Record) -> dict[str, Any]:
    """The dict fastavro writes for `record`."""
    return {name: to(getattr(record, name)) for name, to, _ in _plan(type(record))}


def from_avro(cls: type[R], data: dict[str, Any]) -> R:
    """Build a `cls` record from a dict fastavro read; fields the schema lacks take defaults."""
    kwargs = {name: back(data[name]) for name, _, back in _plan(cls) if name in data}
    return cls(**kwargs)


def from_json(cls: type[R], data: Any, *, path: str = "") -> R:
    """Build a `cls` record from JSON-shaped data (ISO-8601 times, enum names).

    Missing required fields and unknown fields raise ContractError naming the field.
    """
    from datetime import UTC, datetime

    from notifier.contracts.errors import ContractError

    where = path or cls.__name__
    if not isinstance(data, dict):
        raise ContractError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ContractError(f"{where}: unknown field(s) {', '.join(unknown)}")

    def convert(tp: Any, value: Any, at: str) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            if value is None:
                return None
            inner = next(a for a in typing.get_args(tp) if a is not type(None))
            return convert(inner, value, at)
        if origin is list:
            if not isinstance(value, list):
                raise ContractError(f"{at}: expected a list")
            item = typing.get_args(tp)[0]
            return [convert(item, v, f"{at}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise ContractError(f"{at}: expected an object")
            return dict(value)
        if tp is datetime:
            if isinstance(value, int):
                return datetime.fromtimestamp(value / 1000, tz=UTC)
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                raise ContractError(f"{at}: {value!r} is not an ISO-8601 time") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            try:
                return tp(value)
            except ValueError:
                symbols = ", ".join(m.value for m in tp)
                raise ContractError(f"{at}: {value!r} is not one of {symbols}") from None
        if isinstance(tp, type) and issubclass(tp, Record):
            return from_json(tp, value, path=at)
        if tp in (int, str, bool, bytes) and not isinstance(value, tp):
            raise ContractError(f"{at}: expected {tp.__name__}, got {type(value).__name__}")
        return value

    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ContractError(f"{where}: missing required field {name}")
    return cls(**kwargs)
