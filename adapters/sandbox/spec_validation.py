"""Request bodies checked against each provider's published schema, kept in specs/ with the
package it came from (specs/*/SOURCE.md): the sandbox refuses what the provider's own schema
refuses, so a request our adapters could never get past the provider fails in tests too.

Each schema is read twice: compiled by jsonschema-rs for the yes or no every request needs
(a few microseconds a body), and by jsonschema, which words the refusal, asked only when the
compiled check says no. The compiled reading asserts exactly the formats jsonschema asserts,
through the same functions, so the two agree; should they not, jsonschema has the last word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
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
    code: int | None = None  # the provider's error code, where it answers with one


# -- the compiled yes or no -------------------------------------------------------------------

# keywords whose values are data, not schemas, and those whose values map names to schemas
_DATA = frozenset({"enum", "const", "default", "examples", "example"})
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions", "schemas"})


def _compiled_schema(node: Any, asserted: frozenset[str], named: bool = False) -> Any:
    """`node` with every `format` that `asserted` does not name left out (jsonschema asserts
    only its checker's formats; jsonschema-rs would assert every format it knows). An int32
    also gets its range, which jsonschema's checker tests on numbers and jsonschema-rs's
    format functions, given only strings, cannot."""
    if isinstance(node, list):
        return [_compiled_schema(v, asserted) for v in node]
    if not isinstance(node, dict):
        return node
    if named:  # {name: schema}: a property may be called "format" or "enum"
        return {k: _compiled_schema(v, asserted) for k, v in node.items()}
    out = {
        k: v if k in _DATA else _compiled_schema(v, asserted, k in _NAMED_SCHEMAS)
        for k, v in node.items()
        if not (k == "format" and isinstance(v, str) and v not in asserted)
    }
    if node.get("format") == "int32" and "int32" in asserted:
        out.update(minimum=-(2**31), maximum=2**31 - 1)
    return out


def _compiled(
    schema: dict[str, Any], draft: Any, checker: FormatChecker | None = None
) -> jsonschema_rs.Validator:
    """`schema` compiled, asserting the formats of `checker` (none without one) through its
    own functions."""
    asserted = frozenset(checker.checkers) if checker is not None else frozenset()
    formats = {
        name: (lambda value, name=name: checker.conforms(value, name))
        for name in asserted
        if checker is not None
    }
    validator: jsonschema_rs.Validator = draft(
        _compiled_schema(schema, asserted),
        formats=formats or None,
        validate_formats=bool(asserted),
    )
    return validator


def _passes(validator: jsonschema_rs.Validator, instance: Any) -> bool:
    """The compiled check's yes; a body it cannot read (a key that is not text) is left to
    jsonschema."""
    try:
        return bool(validator.is_valid(instance))
    except ValueError:
        return False


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
def _fcm_schema() -> dict[str, Any]:
    document = json.loads(FCM_DISCOVERY.read_text())
    schema = discovery_schema(document, "SendMessageRequest")
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def fcm_validator() -> Draft202012Validator:
    """SendMessageRequest of FCM v1's discovery document."""
    return Draft202012Validator(_fcm_schema(), format_checker=_google_formats)


@cache
def fcm_compiled() -> jsonschema_rs.Validator:
    """fcm_validator()'s schema compiled: the yes or no of each messages:send body."""
    return _compiled(_fcm_schema(), jsonschema_rs.Draft202012Validator, _google_formats)


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
    payload = _without_nulls(payload)
    if _passes(fcm_compiled(), payload):
        return None
    error = best_match(fcm_validator().iter_errors(payload))
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
def _sendgrid_schema() -> dict[str, Any]:
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
    return schema


@cache
def sendgrid_validator() -> Draft202012Validator:
    """The request body of POST /v3/mail/send in SendGrid's OpenAPI document (3.1, whose
    schemas are JSON Schema 2020-12)."""
    return Draft202012Validator(_sendgrid_schema(), format_checker=_openapi_formats)


@cache
def sendgrid_compiled() -> jsonschema_rs.Validator:
    """sendgrid_validator()'s schema compiled: the yes or no of each mail send body."""
    return _compiled(_sendgrid_schema(), jsonschema_rs.Draft202012Validator, _openapi_formats)


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
    if _passes(sendgrid_compiled(), payload):
        return None
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


@cache
def adaptive_card_compiled() -> jsonschema_rs.Validator:
    """The Adaptive Card schema compiled as published, its unions read plainly (compiled,
    they cost little); no format asserted, as jsonschema is given no checker for cards."""
    return _compiled(json.loads(ADAPTIVE_CARD.read_text()), jsonschema_rs.Draft6Validator)


def adaptive_card_violation(card: Any) -> Violation | None:
    """What the Adaptive Card schema refuses in a card, or None."""
    if _passes(adaptive_card_compiled(), card):
        return None
    error = best_match(adaptive_card_validator().iter_errors(card))
    if error is None:
        return None
    return Violation(_path(error, ".", "{}"), error.message[:300])


# -- Twilio (OpenAPI 3.0, form-encoded) -------------------------------------------------------

TWILIO_OPENAPI = SPECS / "twilio" / "twilio_api_v2010_create.json"
_TWILIO_PATHS = {
    "Messages": "/2010-04-01/Accounts/{AccountSid}/Messages.json",
    "Calls": "/2010-04-01/Accounts/{AccountSid}/Calls.json",
}
_FORM = "application/x-www-form-urlencoded"
_twilio_formats = FormatChecker(formats=())


@_twilio_formats.checks("uri")
def _is_url(value: object) -> bool:
    # Twilio wants an absolute URL with a host ("URL must contain a valid hostname")
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


@_twilio_formats.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATETIME.match(value))


def _without_ignored_formats(node: Any) -> Any:
    # the spec marks some formats `x-twilio: {ignoreFormat: true}` (MediaUrl): not enforced
    if isinstance(node, dict):
        kept = {k: _without_ignored_formats(v) for k, v in node.items()}
        if isinstance(node.get("x-twilio"), dict) and node["x-twilio"].get("ignoreFormat"):
            kept.pop("format", None)
        return kept
    if isinstance(node, list):
        return [_without_ignored_formats(v) for v in node]
    return node


@cache
def _twilio_schema(resource: str) -> dict[str, Any]:
    document = json.loads(TWILIO_OPENAPI.read_text())
    body = document["paths"][_TWILIO_PATHS[resource]]["post"]["requestBody"]
    # the schema's $refs point into components: keep them beside it
    schema = {**body["content"][_FORM]["schema"], "components": document["components"]}
    result: dict[str, Any] = _without_ignored_formats(schema)
    return result


@cache
def twilio_validator(resource: str) -> Draft202012Validator:
    """The form request body of Messages or Calls create in Twilio's OpenAPI document (3.0:
    the keywords these schemas use mean the same in JSON Schema 2020-12)."""
    schema = _twilio_schema(resource)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_twilio_formats)


@cache
def twilio_compiled(resource: str) -> jsonschema_rs.Validator:
    """twilio_validator(resource)'s schema compiled: the yes or no of each typed form."""
    schema = _twilio_schema(resource)
    return _compiled(schema, jsonschema_rs.Draft202012Validator, _twilio_formats)


def _form_value(prop: dict[str, Any], values: list[str]) -> Any:
    """A form field read as the type the schema gives it; a value that does not read as that
    type stays text, so the type check refuses it."""
    kind = prop.get("type")
    if kind == "array":
        return values
    value = values[0]
    if kind == "integer" and _INT.match(value):
        return int(value)
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def twilio_form(resource: str, form: dict[str, list[str]]) -> dict[str, Any]:
    """A parsed form (every value of each field) typed by the operation's schema; blank
    fields are left out, as Twilio reads a blank parameter as one not given."""
    schema = _twilio_schema(resource)
    properties: dict[str, Any] = schema.get("properties", {})
    schemas: dict[str, Any] = schema["components"]["schemas"]
    typed: dict[str, Any] = {}
    for name, values in form.items():
        values = [v for v in values if v != ""]
        if not values:
            continue
        prop = properties.get(name, {})
        if "$ref" in prop:
            prop = schemas[str(prop["$ref"]).rsplit("/", 1)[1]]
        typed[name] = _form_value(prop, values)
    return typed


# Twilio's codes for a required parameter left out (its error reference; the spec has none)
_TWILIO_MISSING = {
    ("Messages", "To"): (21604, "A 'To' phone number is required."),
    ("Calls", "To"): (21201, "No 'To' number specified."),
    ("Calls", "From"): (21213, "A 'From' phone number is required."),
}
TWILIO_INVALID_PARAMETER = 20001


def twilio_violation(resource: str, form: dict[str, list[str]]) -> Violation | None:
    """What Twilio's schema refuses in a Messages or Calls create form, with Twilio's error
    code (21604 and the like for a missing required parameter, else 20001), or None."""
    typed = twilio_form(resource, form)
    if _passes(twilio_compiled(resource), typed):
        return None
    error = best_match(twilio_validator(resource).iter_errors(typed))
    if error is None:
        return None
    if error.validator == "required":
        missing = _first_missing(error)
        fallback = (TWILIO_INVALID_PARAMETER, f"Missing required parameter {missing}.")
        code, message = _TWILIO_MISSING.get((resource, missing), fallback)
        return Violation(missing, message, code)
    field = _path(error, ".", "{}")
    if error.validator == "type":
        expected = error.validator_value
        detail = f"{json.dumps(error.instance)} is not a valid {expected}"
    elif error.validator == "enum":
        detail = f"{json.dumps(error.instance)} is not one of {', '.join(error.validator_value)}"
    elif error.validator == "format":
        detail = f"{json.dumps(error.instance)} is not a valid {error.validator_value}"
    else:
        detail = error.message
    return Violation(field, f"Invalid parameter {field}: {detail[:300]}", TWILIO_INVALID_PARAMETER)


def load_all() -> None:
    """Read and compile every schema now (about a tenth of a second), rather than on the
    first request that needs each."""
    fcm_validator()
    fcm_compiled()
    sendgrid_validator()
    sendgrid_compiled()
    adaptive_card_validator()
    adaptive_card_compiled()
    for resource in _TWILIO_PATHS:
        twilio_validator(resource)
        twilio_compiled(resource)
