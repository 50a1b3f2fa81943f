"""Cut the two operations the Twilio adapter calls out of Twilio's OpenAPI document for API
v2010 (2 MB), keeping their form request bodies and the enums they refer to, so the repository
holds 30 kB instead. Usage (see SOURCE.md for where the document comes from):

    python adapters/sandbox/specs/twilio/extract.py twilio_api_v2010.json \
        > adapters/sandbox/specs/twilio/twilio_api_v2010_create.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OPERATIONS = (
    "/2010-04-01/Accounts/{AccountSid}/Messages.json",
    "/2010-04-01/Accounts/{AccountSid}/Calls.json",
)
FORM = "application/x-www-form-urlencoded"


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def extract(document: dict[str, Any]) -> dict[str, Any]:
    """The document reduced to the POST request bodies of OPERATIONS and their $refs."""
    paths: dict[str, Any] = {}
    for path in OPERATIONS:
        post = document["paths"][path]["post"]
        paths[path] = {
            "post": {
                "operationId": post["operationId"],
                "requestBody": {"content": {FORM: post["requestBody"]["content"][FORM]}},
            }
        }
    schemas: dict[str, Any] = {}
    pending = _refs(paths)
    while pending:
        ref = pending.pop()
        prefix = "#/components/schemas/"
        if not ref.startswith(prefix):
            raise ValueError(f"unexpected reference {ref}")
        name = ref.removeprefix(prefix)
        if name not in schemas:
            schemas[name] = document["components"]["schemas"][name]
            pending |= _refs(schemas[name])
    return {
        "openapi": document["openapi"],
        "info": {
            "title": document["info"]["title"],
            "version": document["info"]["version"],
            "license": document["info"]["license"],
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


if __name__ == "__main__":
    trimmed = extract(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
    sys.stdout.write(json.dumps(trimmed, indent=2, ensure_ascii=False) + "\n")
