"""Every SQL query in docs/NOTIFICATIONLOG.md runs against the live NotificationLog."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from notifier.contracts.records import DeliverySent
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[3] / "docs" / "NOTIFICATIONLOG.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
async def incident_id(pipeline: Pipeline) -> str:
    event = pipeline.incident("alice", "bob")
    await pipeline.events(
        "delivery.events",
        event.incident_id,
        lambda found: sum(isinstance(e, DeliverySent) for e in found) >= 3,
    )
    return event.incident_id


def test_the_page_has_queries() -> None:
    assert len(QUERIES) >= 7


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.split("FROM")[1].split()[0])
async def test_documented_query_runs(pipeline: Pipeline, incident_id: str, query: str) -> None:
    assert pipeline.settings.database_url is not None
    url = pipeline.settings.database_url.get_secret_value()
    sql = query.replace("<incident-id>", incident_id).replace("<user-id>", "alice")

    async def run() -> list[tuple[object, ...]]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await (await conn.execute(sql)).fetchall()

    about_the_incident = "<incident-id>" in query
    rows = await eventually(run, lambda rs: bool(rs) or not about_the_incident)
    assert rows or not about_the_incident


async def test_the_delivery_status_comes_with_names_and_emails(
    pipeline: Pipeline, incident_id: str
) -> None:
    """The seeds' question, one join: who, reached where, for which incident."""
    rows = await eventually(
        lambda: pipeline.documented(
            "An incident's delivery status, with each person's name and email", incident_id
        ),
        lambda found: len(found) == 3,
    )
    assert sorted((r["email"], r["channel"]) for r in rows) == [
        ("alice@example.com", "EMAIL"),
        ("alice@example.com", "PUSH"),
        ("bob@example.com", "EMAIL"),
    ]
    # the name of the latest profile (another test renames alice on the shared users topic)
    assert all(r["name"] for r in rows)
    assert {(r["title"], r["incident_status"]) for r in rows} == {("db down", "open")}
