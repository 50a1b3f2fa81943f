"""Representative records for tests: every field filled, built from the type hints."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import UTC, datetime
from typing import Any, TypeVar

from notifier.contracts.records import Record

R = TypeVar("R", bound=Record)
FIXED_TIME = datetime(2026, 11, 25, 3, 0, 0, 123000, tzinfo=UTC)


def _value(tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in typing.get_args(tp) if a is not type(None)), name)
    if origin is list:
        return [_value(typing.get_args(tp)[0], name)]
    if origin is dict:
        value_type = typing.get_args(tp)[1]
        return {"k": b"v" if value_type is bytes else "v"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return list(tp)[-1]
    if isinstance(tp, type) and issubclass(tp, Record):
        return sample(tp)
    if tp is datetime:
        return FIXED_TIME
    if tp is bool:
        return True
    if tp is int:
        return 7
    if tp is bytes:
        return b"\x00\xffbytes"
    return f"{name}-value"


def sample(cls: type[R], **overrides: Any) -> R:
    """An instance of `cls` with every field, optional ones included, set."""
    hints = typing.get_type_hints(cls)
    values = {f.name: _value(hints[f.name], f.name) for f in dataclasses.fields(cls)}
    values.update(overrides)
    return cls(**values)
