"""A rebuild drops the read model and runs its migrations again: every migration that
creates or alters a dropped table or view must be among them, or the rebuilt tables
would lack what it added."""

from __future__ import annotations

import re

from projections.migrate import MIGRATIONS_DIR
from projections.rebuild import DROP, READ_MODEL_MIGRATIONS


def test_every_migration_of_a_dropped_table_runs_again_after_a_rebuild() -> None:
    dropped = set(re.findall(r"\b([a-z_]+)\b", DROP.split("IF EXISTS", 1)[1])) - {
        "drop",
        "table",
        "if",
        "exists",
    }
    touching = sorted(
        path.stem
        for path in MIGRATIONS_DIR.glob("*.sql")
        if dropped
        & set(re.findall(r"(?:CREATE|ALTER) (?:TABLE|VIEW) ([a-z_]+)", path.read_text(), re.I))
    )
    assert "0008_incident_details" in touching
    assert sorted(READ_MODEL_MIGRATIONS) == touching
