"""Request bodies checked against each provider's published schema, kept in specs/ with the
package it came from (specs/*/SOURCE.md): the sandbox refuses what the provider's own schema
refuses, so a request our adapters could never get past the provider fails in tests too."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import (
    Draft6Validator,
    Draft202012Validator,
    FormatChecker,
    ValidationError,
    validators,
)
from jsonschema.exceptions import best_match

SPECS = Path(__file__).parent / "specs"
FCM_DISCOVERY = SPECS / "fcm" / "fcm.v1.json"
SENDGRID_OPENAPI = SPECS / "sendgrid" / "tsg_mail_v3.json"


@dataclass(frozen=True)
class Violation:
    """The first part of a request the schema refuses: where (as the provider names the
    field) and why (as the provider words it, as near as known)."""

    field: str
    message: str


# -- Google discovery documents ---------------------------------------------------------------

_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_INT = re.compile(r"^-?\d+$")
_google_formats = FormatChecker(formats=())


@_google_formats.checks("google-duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or bool(_DURATION.match(value))


@_google_formats.checks("google-datetime")
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATETIME.match(value))


@_google_formats.checks("int32")
def _is_int32(value: object) -> bool:
    # proto3 JSON takes an int32 as a number or as a string of digits
    if isinstance(value, str):
        return bool(_INT.match(value)) and -(2**31) <= int(value) < 2**31
    return not isinstance(value, int) or -(2**31) <= value < 2**31


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _discovery_type(node: dict[str, Any]) -> dict[str, Any]:
    """One discovery-document type as JSON Schema (2020-12)."""
    if "$ref" in node:
        return {"$ref": f"#/$defs/{node['$ref']}"}
    kind = node.get("type")
    out: dict[str, Any]
    if kind == "any":
        out = {}
    elif kind == "array":
        out = {"type": "array", "items": _discovery_type(node.get("items", {"type": "any"}))}
    elif kind == "object":
        out = {"type": "object"}
        if "properties" in node:
            properties: dict[str, Any] = {}
            for name, prop in node["properties"].items():
                # proto3 JSON parsers take a field by its lowerCamelCase name or its proto name
                properties[name] = properties[_snake(name)] = _discovery_type(prop)
            out["properties"] = properties
            out["additionalProperties"] = False  # Google refuses an unknown name
            # the documents state required-ness only in prose: "Required. ..."
            required = [
                n
                for n, p in node["properties"].items()
                if str(p.get("description", "")).startswith("Required.")
            ]
            if required:
                out["required"] = required
        elif "additionalProperties" in node:
            out["additionalProperties"] = _discovery_type(node["additionalProperties"])
    elif kind == "integer":
        out = {"type": ["integer", "string"]}
    elif kind in ("string", "boolean", "number"):
        out = {"type": kind}
    else:
        raise ValueError(f"discovery type {kind!r} is not known here")
    if "enum" in node:
        out["enum"] = list(node["enum"])
    if "format" in node:
        out["format"] = node["format"]
    return out


def discovery_schema(document: dict[str, Any], root: str) -> dict[str, Any]:
    """The JSON Schema of the discovery document's type `root`, every other type in $defs."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/$defs/{root}",
        "$defs": {name: _discovery_type(node) for name, node in document["schemas"].items()},
    }


def _without_nulls(value: Any) -> Any:
    # proto3 JSON reads a null field as the field left out
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@cache
def fcm_validator() -> Draft202012Validator:
    """SendMessageRequest of FCM v1's discovery document."""
    document = json.loads(FCM_DISCOVERY.read_text())
    schema = discovery_schema(document, "SendMessageRequest")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_google_formats)


def _path(error: ValidationError, sep: str, index: str) -> str:
    parts = [index.format(p) if isinstance(p, int) else str(p) for p in error.absolute_path]
    return sep.join(parts).replace(f"{sep}[", "[")


def _first_missing(error: ValidationError) -> str:
    present = error.instance if isinstance(error.instance, dict) else {}
    required = error.validator_value if isinstance(error.validator_value, list) else []
    return next((str(n) for n in required if n not in present), "")


def _proto_type(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "enum":
        return "TYPE_ENUM"
    fmt = schema.get("format")
    if fmt == "google-duration":
        return "type.googleapis.com/google.protobuf.Duration"
    if fmt == "google-datetime":
        return "type.googleapis.com/google.protobuf.Timestamp"
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    return {
        "string": "TYPE_STRING",
        "boolean": "TYPE_BOOL",
        "integer": "TYPE_INT32",
        "number": "TYPE_FLOAT",
        "array": "TYPE_MESSAGE",
        "object": "TYPE_MESSAGE",
    }.get(str(kind), "TYPE_MESSAGE")


def fcm_violation(payload: Any) -> Violation | None:
    """What FCM's schema refuses in a messages:send body, worded as Google's JSON parser
    words it ("Invalid value at 'message.android.priority' ..."), or None."""
    error = best_match(fcm_validator().iter_errors(_without_nulls(payload)))
    if error is None:
        return None
    field = _path(error, ".", "[{}]")
    if not field and error.validator == "type":
        return Violation(
            "", 'Invalid JSON payload received. Unknown name "": Root element must be a message.'
        )
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = f" at '{field}'" if field else ""
        return Violation(
            field,
            f'Invalid JSON payload received. Unknown name "{unknown[0]}"{where}: '
            "Cannot find field.",
        )
    if error.validator == "required":
        missing = _first_missing(error)
        name = f"{field}.{missing}" if field else missing
        return Violation(name, f"Required field '{name}' is missing.")
    if error.validator in ("type", "enum", "format"):
        shown = json.dumps(error.instance) if not isinstance(error.instance, dict) else "{...}"
        return Violation(field, f"Invalid value at '{field}' ({_proto_type(error)}), {shown}")
    return Violation(field, f"Invalid value at '{field}': {error.message}")


# -- OpenAPI 3.1 ------------------------------------------------------------------------------

_openapi_formats = FormatChecker(formats=("email",))


@cache
def sendgrid_validator() -> Draft202012Validator:
    """The request body of POST /v3/mail/send in SendGrid's OpenAPI document (3.1, whose
    schemas are JSON Schema 2020-12)."""
    document = json.loads(SENDGRID_OPENAPI.read_text())
    body = document["paths"]["/v3/mail/send"]["post"]["requestBody"]["$ref"]
    if not body.startswith("#/components/requestBodies/"):
        raise ValueError(f"unexpected request body reference {body}")
    name = body.rsplit("/", 1)[1]
    # the body's $refs point into components: the schema keeps them beside it
    schema = {
        "$ref": f"#/components/requestBodies/{name}/content/application~1json/schema",
        "components": document["components"],
    }
    return Draft202012Validator(schema, format_checker=_openapi_formats)


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def sendgrid_violation(payload: Any) -> Violation | None:
    """What SendGrid's schema refuses in a mail send body, with the field named as SendGrid's
    errors name it ("personalizations.0.to"), or None."""
    error = best_match(sendgrid_validator().iter_errors(payload))
    if error is None:
        return None
    field = _path(error, ".", "{}")
    if error.validator == "type":
        given = _JSON_TYPES.get(type(error.instance), "unknown")
        return Violation(field, f"Invalid type. Expected: {error.validator_value}, given: {given}.")
    if error.validator == "required":
        missing = _first_missing(error)
        name = f"{field}.{missing}" if field else missing
        return Violation(name, f"The {name} parameter is required.")
    if error.validator == "format":
        return Violation(field, "Does not contain a valid address.")
    return Violation(field, f"The {field or 'request'} field is invalid: {error.message}")


# -- Adaptive Cards (Teams) -------------------------------------------------------------------

ADAPTIVE_CARD = SPECS / "teams" / "adaptive-card-1.4.json"


def _by_type(definitions: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """An `ImplementationsOf.*` anyOf (one branch per element type) as a dispatch on the
    element's `type`: the same cards pass, at a fraction of the cost, and a refusal names the
    field inside the element rather than "not valid under any of the given schemas"."""
    names: dict[str, str] = {}
    for branch in node.get("anyOf", []):
        refs = branch.get("allOf", [])
        if set(branch) != {"required", "allOf"} or branch["required"] != ["type"]:
            return node
        if len(refs) != 1:
            return node
        target = definitions[refs[0]["$ref"].rsplit("/", 1)[1]]
        kinds = target.get("properties", {}).get("type", {}).get("enum", [])
        # only unions of objects told apart by `type` (a TextRun may be a plain string)
        if len(kinds) != 1 or target.get("type") != "object":
            return node
        names[kinds[0]] = refs[0]["$ref"]
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": list(names)}},
        "x-by-type": names,
    }


def _dispatch(
    validator: Any, by_type: dict[str, str], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    # checks the element against the one definition its `type` names
    ref = by_type.get(str(instance.get("type"))) if isinstance(instance, dict) else None
    if ref is not None:
        yield from validator.descend(instance, {"$ref": ref})


# the stubs leave extend() untyped
_CardValidator = validators.extend(Draft6Validator, {"x-by-type": _dispatch})  # type: ignore[no-untyped-call]


@cache
def adaptive_card_validator() -> Any:
    """Microsoft's Adaptive Card 1.4 schema (draft-06), its element unions dispatched by
    `type` (the keyword `x-by-type`)."""
    schema = json.loads(ADAPTIVE_CARD.read_text())
    Draft6Validator.check_schema(schema)
    definitions = schema["definitions"]
    for name, node in list(definitions.items()):
        if name.startswith("ImplementationsOf."):
            definitions[name] = _by_type(definitions, node)
    return _CardValidator(schema)


def adaptive_card_violation(card: Any) -> Violation | None:
    """What the Adaptive Card schema refuses in a card, or None."""
    error = best_match(adaptive_card_validator().iter_errors(card))
    if error is None:
        return None
    return Violation(_path(error, ".", "{}"), error.message[:300])
