"""The Python records are checked against schemas/, which stay the single contract."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from typing import Any

import pytest

from notifier.contracts.records import TOP_LEVEL_RECORDS, Record
from notifier.contracts.schemas import load_schemas

PRIMITIVES = {
    "string": str,
    "int": int,
    "long": int,
    "boolean": bool,
    "bytes": bytes,
    "double": float,
    "float": float,
}


def _named_types(schema: Any, found: dict[str, Any]) -> None:
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum") and "name" in schema:
            found[schema["name"]] = schema
        for value in schema.values():
            _named_types(value, found)
    elif isinstance(schema, list):
        for item in schema:
            _named_types(item, found)


def _mismatch(avro: Any, tp: Any, where: str, named: dict[str, Any]) -> list[str]:
    """Differences between an Avro type and a Python annotation."""
    origin = typing.get_origin(tp)
    if isinstance(avro, list):  # union: only ["null", X] is used
        if avro[0] != "null" or len(avro) != 2:
            return [f"{where}: unsupported union {avro}"]
        if origin not in (typing.Union, types.UnionType) or type(None) not in typing.get_args(tp):
            return [f"{where}: nullable in Avro but {tp} in Python"]
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return _mismatch(avro[1], inner, where, named)
    if origin in (typing.Union, types.UnionType):
        return [f"{where}: optional in Python but not nullable in Avro"]
    if isinstance(avro, str):
        if avro in PRIMITIVES:
            return [] if tp is PRIMITIVES[avro] else [f"{where}: {avro} vs {tp}"]
        avro = named[avro.split(".")[-1]]
    if avro.get("logicalType") == "timestamp-millis":
        return [] if tp is datetime else [f"{where}: timestamp vs {tp}"]
    kind = avro["type"]
    if kind in PRIMITIVES:
        return _mismatch(kind, tp, where, named)
    if kind == "array":
        if origin is not list:
            return [f"{where}: array vs {tp}"]
        return _mismatch(avro["items"], typing.get_args(tp)[0], f"{where}[]", named)
    if kind == "map":
        if origin is not dict:
            return [f"{where}: map vs {tp}"]
        return _mismatch(avro["values"], typing.get_args(tp)[1], f"{where}{{}}", named)
    if kind == "enum":
        if not (isinstance(tp, type) and issubclass(tp, enum.Enum)):
            return [f"{where}: enum vs {tp}"]
        symbols = [m.value for m in tp]
        ok = symbols == avro["symbols"] and tp.__name__ == avro["name"]
        return [] if ok else [f"{where}: enum {avro['name']}{avro['symbols']} vs {tp}{symbols}"]
    if kind == "record":
        if not (isinstance(tp, type) and issubclass(tp, Record)):
            return [f"{where}: record vs {tp}"]
        return _record_mismatch(avro, tp, named)
    return [f"{where}: unhandled Avro type {kind}"]


def _record_mismatch(avro: dict[str, Any], cls: type[Record], named: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    full = avro["name"] if "." in avro["name"] else f"{avro['namespace']}.{avro['name']}"
    if full != cls.AVRO_NAME or cls.__name__ != avro["name"]:
        problems.append(f"{cls.__name__}: AVRO_NAME {cls.AVRO_NAME} vs schema {full}")
    hints = typing.get_type_hints(cls)
    py_fields = {f.name: f for f in dataclasses.fields(cls)}
    avro_fields = {f["name"]: f for f in avro["fields"]}
    if set(py_fields) != set(avro_fields):
        problems.append(
            f"{cls.__name__}: fields differ: only in Python "
            f"{sorted(set(py_fields) - set(avro_fields))}, only in Avro "
            f"{sorted(set(avro_fields) - set(py_fields))}"
        )
    for name in set(py_fields) & set(avro_fields):
        problems += _mismatch(
            avro_fields[name]["type"], hints[name], f"{cls.__name__}.{name}", named
        )
        has_py_default = (
            py_fields[name].default is not dataclasses.MISSING
            or py_fields[name].default_factory is not dataclasses.MISSING
        )
        if has_py_default != ("default" in avro_fields[name]):
            problems.append(f"{cls.__name__}.{name}: default in one side only")
        if not avro_fields[name].get("doc"):
            problems.append(f"{cls.__name__}.{name}: schema field has no doc")
    return problems


def test_every_schema_has_exactly_one_record_type() -> None:
    assert sorted(load_schemas()) == sorted(r.AVRO_NAME for r in TOP_LEVEL_RECORDS)


@pytest.mark.parametrize("cls", TOP_LEVEL_RECORDS, ids=lambda c: c.__name__)
def test_record_matches_its_schema(cls: type[Record]) -> None:
    import json

    schema = json.loads(load_schemas()[cls.AVRO_NAME].text)
    named: dict[str, Any] = {}
    _named_types(schema, named)
    assert _record_mismatch(schema, cls, named) == []
    assert schema.get("doc"), f"{cls.__name__} schema has no doc"


def test_types_shared_between_schemas_are_defined_identically() -> None:
    import json

    seen: dict[str, tuple[str, Any]] = {}
    for full, schema in load_schemas().items():
        named: dict[str, Any] = {}
        _named_types(json.loads(schema.text), named)
        for name, definition in named.items():
            if name in seen:
                assert seen[name][1] == definition, f"{name} differs in {full} and {seen[name][0]}"
            seen[name] = (full, definition)


def test_the_checker_notices_a_drifted_record() -> None:
    @dataclasses.dataclass(frozen=True)
    class IncidentResolved(Record):
        AVRO_NAME: typing.ClassVar[str] = "notifier.IncidentResolved"
        event_id: str
        occurred_at: int  # wrong: the schema says timestamp-millis
        incident_id: str

    import json

    schema = json.loads(load_schemas()["notifier.IncidentResolved"].text)
    problems = _record_mismatch(schema, IncidentResolved, {})
    assert any("occurred_at" in p for p in problems)
    assert any("only in Avro" in p and "by_user_id" in p for p in problems)
