"""The read model is rebuilt from the topics row for row, and survives a PostgreSQL outage.

(Named to run after the other pipeline tests: it drops tables and stops PostgreSQL.)"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg
import pytest

from devstack import postgres as devpostgres
from devstack.config import StackConfig
from notifier.kafka_io import end_offsets
from notifier.topics import full_name
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration

SNAPSHOT = [
    "SELECT notification_id, incident_id, user_id, channel, tier, escalation_level, priority, "
    "kind, repeat, status, provider, provider_message_id, error, error_category, "
    "attempt_count, queued_at, sent_at, delivered_at, failed_at, cancelled_at, "
    "last_attempt_at FROM notification_log ORDER BY notification_id",
    "SELECT * FROM notification_attempt ORDER BY notification_id, attempt",
    "SELECT * FROM user_event ORDER BY event_id",
    # kept by a rebuild, which folds in only what the projection had not: each level's
    # outcomes and decisions (the ids of the notifications in it grow with the repeats of
    # earlier tests' open incidents)
    "SELECT key, (SELECT jsonb_object_agg(level, s - 'notification_tiers') "
    "FROM jsonb_each(state -> 'levels') AS l(level, s)) FROM tier_state ORDER BY key",
]


def _url(pipeline: Pipeline) -> str:
    assert pipeline.settings.database_url is not None
    return pipeline.settings.database_url.get_secret_value()


async def _caught_up(pipeline: Pipeline) -> bool:
    ends = {
        (full_name(pipeline.settings, logical), p): o
        for logical in ("delivery.events", "provider.callbacks")
        for p, o in end_offsets(pipeline.settings, logical).items()
        if o > 0
    }
    async with await psycopg.AsyncConnection.connect(_url(pipeline)) as conn:
        stored = dict(
            ((t, p), o)
            for t, p, o in await (
                await conn.execute("SELECT topic, partition, next_offset FROM projection_offset")
            ).fetchall()
        )
    return all(stored.get(key) == end for key, end in ends.items())


def _snapshot(pipeline: Pipeline) -> list[list[tuple[Any, ...]]]:
    with psycopg.connect(_url(pipeline)) as conn:
        return [conn.execute(query).fetchall() for query in SNAPSHOT]


async def test_rebuild_equals_the_live_table(
    pipeline: Pipeline, cli_env: dict[str, str], notifier_bin: Any
) -> None:
    event = pipeline.incident("alice", "bob")

    async def sent() -> int:
        async with await psycopg.AsyncConnection.connect(_url(pipeline)) as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM notification_log WHERE incident_id = %s "
                    "AND status = 'SENT'",
                    (event.incident_id,),
                )
            ).fetchone()
            return int(row[0]) if row else 0

    async def unsettled() -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(_url(pipeline)) as conn:
            return await (
                await conn.execute(
                    "SELECT incident_id, user_id, channel, kind, repeat, status, attempt_count "
                    "FROM notification_log WHERE status IN ('QUEUED', 'SENDING')"
                )
            ).fetchall()

    await eventually(sent, lambda n: n == 3, timeout_s=30)
    # quiet first: a retry an earlier test left waiting would land between the two snapshots
    await eventually(unsettled, lambda rows: not rows, timeout_s=60)
    await eventually(lambda: _caught_up(pipeline), bool, timeout_s=30)
    live = _snapshot(pipeline)
    assert len(live[0]) >= 3
    result = subprocess.run(  # noqa: ASYNC221  # the CLI as an operator runs it
        [str(notifier_bin), "projection", "rebuild", "--yes"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt from" in result.stdout
    # rows born after the live snapshot are left out: earlier tests' unacknowledged CRITICAL
    # incidents keep repeating (every 4 s here), and a repeat can land before the rebuild
    known = [{row[0] for row in rows} for rows in live]
    rebuilt = _snapshot(pipeline)
    assert [[r for r in rows if r[0] in k] for rows, k in zip(rebuilt, known, strict=True)] == live


def _start_postgres() -> None:
    # a new process, as `make up` would: pgserver caches the server it started in this one
    subprocess.run(
        [sys.executable, "-m", "devstack", "up", "--stack", "test"],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def test_a_postgresql_outage_loses_nothing(pipeline: Pipeline) -> None:
    config = StackConfig.from_env("test")
    if config.database_url:
        pytest.skip("PostgreSQL is external (DATABASE_URL): not ours to stop")
    assert devpostgres.stop(config)
    try:
        event = pipeline.incident("alice")
        await eventually(
            lambda: pipeline.requests(incident_id=event.incident_id), lambda found: len(found) == 2
        )  # sends go on without the database
    finally:
        _start_postgres()

    async def rows() -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(_url(pipeline)) as conn:
            return await (
                await conn.execute(
                    "SELECT channel, status FROM notification_log WHERE incident_id = %s "
                    "ORDER BY channel",
                    (event.incident_id,),
                )
            ).fetchall()

    assert await eventually(
        rows, lambda rs: rs == [("EMAIL", "SENT"), ("PUSH", "SENT")], timeout_s=60
    )
