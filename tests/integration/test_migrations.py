"""Read-model migrations against the real PostgreSQL: applied once, then nothing changes."""

from __future__ import annotations

import psycopg
import pytest

from projections.migrate import MIGRATIONS_DIR, migrate

pytestmark = pytest.mark.integration

SNAPSHOT = """
    SELECT table_name, column_name, data_type, is_nullable
      FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name NOT LIKE '%yoyo%'
  ORDER BY table_name, ordinal_position
"""


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    expected = sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))
    first = migrate(database_url)
    with psycopg.connect(database_url) as conn:
        before = conn.execute(SNAPSHOT).fetchall()
    second = migrate(database_url)
    with psycopg.connect(database_url) as conn:
        after = conn.execute(SNAPSHOT).fetchall()
        tables = {r[0] for r in after}
        views = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'"
            )
        }
        applied = sorted(r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration"))

    assert sorted(first.applied + first.already) == expected
    assert second.applied == [] and sorted(second.already) == expected
    assert before == after
    assert {"notification_log", "notification_attempt", "projection_offset"} <= tables
    assert {"incident_summary", "channel_success_rate"} <= views
    assert applied == expected


def test_the_read_model_enforces_its_vocabulary(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO notification_log (notification_id, incident_id, user_id, channel, status)"
            " VALUES (gen_random_uuid(), 'i', 'u', 'EMAIL', 'LOST')"
        )


@pytest.mark.parametrize("table", ["incident", "notification_log"])
def test_info_is_a_priority_and_a_made_up_one_is_not(database_url: str, table: str) -> None:
    migrate(database_url)
    insert = {
        "incident": "INSERT INTO incident (incident_id, title, priority, status, last_event_at)"
        " VALUES (gen_random_uuid()::text, 't', %s, 'open', now())",
        "notification_log": "INSERT INTO notification_log"
        " (notification_id, incident_id, user_id, channel, status, priority)"
        " VALUES (gen_random_uuid(), 'i', 'u', 'EMAIL', 'QUEUED', %s)",
    }[table]
    with psycopg.connect(database_url) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(insert, ("INFO",))
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
            conn.execute(insert, ("TRIVIAL",))
