"""A rebuild drops the read model and runs its migrations again: every migration that
creates or alters a dropped table or view must be among them, or the rebuilt tables
would lack what it added."""

from __future__ import annotations

import re

from projections.migrate import MIGRATIONS_DIR
from projections.rebuild import DROP, READ_MODEL_MIGRATIONS


def _touched(sql: str) -> set[str]:
    """The tables and views a migration creates or alters, and those whose indexes it drops
    (an index is named after its table: notification_log_incident)."""
    named = set(re.findall(r"(?:CREATE|ALTER) (?:TABLE|VIEW) ([a-z_]+)", sql, re.I))
    for index in re.findall(r"DROP INDEX (?:IF EXISTS )?([a-z_]+)", sql, re.I):
        named |= {index[:end] for end in range(len(index)) if index[end] == "_"}
    return named


def test_every_migration_of_a_dropped_table_runs_again_after_a_rebuild() -> None:
    dropped = set(re.findall(r"\b([a-z_]+)\b", DROP.split("IF EXISTS", 1)[1])) - {
        "drop",
        "table",
        "if",
        "exists",
    }
    touching = sorted(
        path.stem for path in MIGRATIONS_DIR.glob("*.sql") if dropped & _touched(path.read_text())
    )
    assert "0008_incident_details" in touching
    assert "0012_lighter_log_writes" in touching
    assert sorted(READ_MODEL_MIGRATIONS) == touching
