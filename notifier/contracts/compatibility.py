"""Backward compatibility of a schema change: can the new schema read the old one's data?

The check writes records generated from the old (writer) schema and reads them with the new
(reader) schema, so it exercises Avro's own resolution rules rather than a copy of them.
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from notifier.contracts.schemas import AvroSchema, parse_schema_text


def backward_problems(reader: AvroSchema, writer: AvroSchema, samples: int = 50) -> list[str]:
    """Why `reader` cannot read data written with `writer`; empty when it can."""
    problems: list[str] = []
    for record in generate_many(writer.parsed, samples):
        buf = io.BytesIO()
        schemaless_writer(buf, writer.parsed, record)
        buf.seek(0)
        try:
            schemaless_reader(buf, writer.parsed, reader.parsed)
        except Exception as exc:  # any resolution failure is the answer we are after
            problems.append(f"{type(exc).__name__}: {exc}")
            break
    return problems


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
