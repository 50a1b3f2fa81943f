"""Backward compatibility of schema changes: can each new schema read its old data?

The verdict is the Schema Registry's (BACKWARD rule); git tells which version came before.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifier.contracts.schemas import AvroSchema, parse_schema_text


def backward_problems(registry_url: str, previous: AvroSchema, current: AvroSchema) -> str | None:
    """The registry's reason `current` cannot read data written with `previous`, or None.

    Both versions go to a scratch subject with BACKWARD compatibility, so the verdict and
    its wording are the registry's own; the subject is deleted afterwards.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    subject = f"compatibility-check-{uuid.uuid4().hex}-{current.name}"
    with SchemaRegistryClient({"url": registry_url}) as client:
        return _judge(client, subject, previous, current)


def _judge(client: Any, subject: str, previous: AvroSchema, current: AvroSchema) -> str | None:
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        client.set_compatibility(subject, "BACKWARD")
        client.register_schema(subject, Schema(previous.text, "AVRO"))
        if client.test_compatibility(subject, Schema(current.text, "AVRO")):
            return None
        try:
            client.register_schema(subject, Schema(current.text, "AVRO"))
        except SchemaRegistryError as exc:
            return f"{exc.error_message} (HTTP {exc.http_status_code})"
        return "the registry reports it incompatible"
    finally:
        with contextlib.suppress(SchemaRegistryError):
            client.delete_subject(subject)
            client.delete_subject(subject, permanent=True)


@dataclass(frozen=True)
class SchemaChange:
    """A schema file next to its previous committed version."""

    path: Path
    previous_commit: str
    previous: AvroSchema
    current: AvroSchema


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def changed_schemas(repo: Path, schemas_dir: Path) -> list[SchemaChange]:
    """Each schema file paired with its last committed version that differs from it now."""
    changes: list[SchemaChange] = []
    try:
        _git(repo, "rev-parse", "--verify", "-q", "HEAD")
    except subprocess.CalledProcessError:
        return changes  # no commit yet: nothing to be compatible with
    for path in sorted(schemas_dir.glob("*.avsc")):
        rel = path.relative_to(repo).as_posix()
        text = path.read_text()
        for commit in _git(repo, "log", "--format=%H", "--", rel).split():
            try:
                old = _git(repo, "show", f"{commit}:{rel}")
            except subprocess.CalledProcessError:
                break  # the file did not exist at that commit (renamed in)
            if old != text:
                changes.append(
                    SchemaChange(
                        path, commit, parse_schema_text(old), parse_schema_text(text, path)
                    )
                )
                break
    return changes
