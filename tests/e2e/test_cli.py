"""The `notifier` command as a user drives it, against the real test stack."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from projections.migrate import MIGRATIONS_DIR

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
COMMANDS = [
    [],
    ["config"],
    ["publish-incident"],
    ["upsert-user"],
    ["tail"],
    ["topics"],
    ["topics", "create"],
    ["topics", "list"],
    ["db"],
    ["db", "migrate"],
    ["log"],
]


def run(
    notifier_bin: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(notifier_bin), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def tail_one(notifier_bin: Path, env: dict[str, str], incident_id: str) -> dict[str, Any]:
    """The first message on incidents with this key, as `notifier tail` prints it."""
    tailed = run(
        notifier_bin,
        env,
        "tail",
        "incidents",
        "--from-beginning",
        "--key",
        incident_id,
        "--count",
        "1",
        "--timeout",
        "15",
    )
    assert tailed.returncode == 0, tailed.stderr
    shown: dict[str, Any] = json.loads(tailed.stdout)
    return shown


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "notifier")
def test_every_command_has_help(notifier_bin: Path, command: list[str]) -> None:
    result = subprocess.run(
        [str(notifier_bin), *command, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_publish_an_incident_and_read_it_back(notifier_bin: Path, cli_env: dict[str, str]) -> None:
    assert run(notifier_bin, cli_env, "topics", "create").returncode == 0
    users = run(
        notifier_bin, cli_env, "upsert-user", "--file", str(REPO / "deploy/sample/users.json")
    )
    assert users.returncode == 0, users.stderr
    assert "upserted user alice" in users.stdout

    incident_id = f"e2e-{uuid.uuid4()}"
    published = run(
        notifier_bin,
        cli_env,
        "publish-incident",
        "--file",
        str(REPO / "deploy/sample/incident.json"),
        "--incident-id",
        incident_id,
    )
    assert published.returncode == 0, published.stderr
    assert f"published IncidentOpened {incident_id}" in published.stdout

    shown = tail_one(notifier_bin, cli_env, incident_id)
    assert shown["type"] == "IncidentOpened"
    assert shown["value"]["incident_id"] == incident_id
    assert shown["value"]["user_ids"] == ["alice", "bob"]
    assert shown["value"]["priority"] == "CRITICAL"
    assert shown["value"]["team_name"] == "Payments" and shown["value"]["alert_count"] == 3


def test_flags_publish_an_info_incident_with_its_details(
    notifier_bin: Path, cli_env: dict[str, str]
) -> None:
    assert run(notifier_bin, cli_env, "topics", "create").returncode == 0
    incident_id = f"e2e-info-{uuid.uuid4()}"
    published = run(
        notifier_bin,
        cli_env,
        "publish-incident",
        "--incident-id",
        incident_id,
        "--title",
        "certificate renews in 30 days",
        "--priority",
        "INFO",
        "--user",
        "alice",
        "--service",
        "edge",
        "--team",
        "Platform",
        "--alert-count",
        "1",
        "--triggered-at",
        "2026-12-03T11:58:00",
        "--dashboard-url",
        "https://grafana.example.com/d/edge",
    )
    assert published.returncode == 0, published.stderr
    value = tail_one(notifier_bin, cli_env, incident_id)["value"]
    assert (value["priority"], value["team_name"], value["alert_count"]) == ("INFO", "Platform", 1)
    assert value["dashboard_url"] == "https://grafana.example.com/d/edge"
    assert str(value["triggered_at"]).startswith(("2026-12-03T11:58:00", "1796731080000"))


def test_flags_publish_an_acknowledgement(notifier_bin: Path, cli_env: dict[str, str]) -> None:
    assert run(notifier_bin, cli_env, "topics", "create").returncode == 0
    incident_id = f"e2e-ack-{uuid.uuid4()}"
    ack = run(
        notifier_bin,
        cli_env,
        "publish-incident",
        "--type",
        "acknowledged",
        "--incident-id",
        incident_id,
        "--by",
        "alice",
    )
    assert ack.returncode == 0, ack.stderr
    shown = tail_one(notifier_bin, cli_env, incident_id)
    assert shown["type"] == "IncidentAcknowledged"
    assert shown["value"]["by_user_id"] == "alice" and shown["value"]["via"] == "cli"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"type": "opened", "title": "t"}', "missing required field"),
        ('{"type": "exploded"}', "unknown incident type 'exploded'"),
        ("{not json", "cannot read"),
        (
            '{"type": "opened", "incident_id": "i", "title": "t", "priority": "URGENT", '
            '"escalation_level": 1, "user_ids": []}',
            "'URGENT' is not one of",
        ),
    ],
    ids=["missing-field", "unknown-type", "bad-json", "bad-enum"],
)
def test_bad_input_files_get_a_clear_error(
    notifier_bin: Path, cli_env: dict[str, str], tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "incident.json"
    bad.write_text(content)
    result = run(notifier_bin, cli_env, "publish-incident", "--file", str(bad))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_and_show_an_empty_log(notifier_bin: Path, cli_env: dict[str, str]) -> None:
    first = run(notifier_bin, cli_env, "db", "migrate")
    assert first.returncode == 0, first.stderr
    again = run(notifier_bin, cli_env, "db", "migrate")
    migrations = len(list(MIGRATIONS_DIR.glob("*.sql")))
    assert f"0 applied, {migrations} already applied" in again.stdout
    log = run(notifier_bin, cli_env, "log", "no-such-incident")
    assert log.returncode == 0, log.stderr
    assert "no notifications recorded for incident no-such-incident" in log.stdout


def test_topics_list_and_config(notifier_bin: Path, cli_env: dict[str, str]) -> None:
    assert run(notifier_bin, cli_env, "topics", "create").returncode == 0
    listed = run(notifier_bin, cli_env, "topics", "list")
    assert listed.returncode == 0, listed.stderr
    prefix = cli_env["NOTIFIER_TOPIC_PREFIX"]
    for name in ("incidents", "users", "notify.email", "delivery.events", "deadletter"):
        assert f"{prefix}{name}" in listed.stdout
    assert "missing" not in listed.stdout
    shown = run(notifier_bin, {**cli_env, "DATABASE_URL": "postgresql://u:hunter2@db/x"}, "config")
    assert "postgresql://u:***@db/x" in shown.stdout and "hunter2" not in shown.stdout


def test_unreachable_kafka_is_a_clear_error(notifier_bin: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "NOTIFIER_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = run(notifier_bin, env, "topics", "create", "--timeout", "3")
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_schema_registry_is_named(
    notifier_bin: Path, cli_env: dict[str, str]
) -> None:
    env = {**cli_env, "SCHEMA_REGISTRY_URL": "http://127.0.0.1:1/apis/ccompat/v7"}
    result = run(notifier_bin, env, "publish-incident", "--title", "t", "--user", "alice")
    assert result.returncode == 1
    assert "http://127.0.0.1:1/apis/ccompat/v7" in result.stderr
    assert "not reachable" in result.stderr and "Traceback" not in result.stderr


def test_the_log_tells_alerts_notices_and_repeats_apart(
    notifier_bin: Path, cli_env: dict[str, str]
) -> None:
    import psycopg

    from tests.conftest import scratch_database

    base = cli_env["DATABASE_URL"]
    # rows written by hand go to a database of their own: the workers' tests read theirs
    with scratch_database(base, f"{urlsplit(base).path.strip('/')}_log") as url:
        env = {**cli_env, "DATABASE_URL": url, "COLUMNS": "250"}
        assert run(notifier_bin, env, "db", "migrate").returncode == 0
        incident = f"log-{uuid.uuid4().hex[:8]}"
        rows = [("ALERT", 0, "SENT"), ("ALERT", 2, "SENT"), ("ACKNOWLEDGED_NOTICE", 0, "QUEUED")]
        with psycopg.connect(url) as conn:
            for kind, repeat, status in rows:
                conn.execute(
                    "INSERT INTO notification_log (notification_id, incident_id, user_id, "
                    "channel, tier, escalation_level, kind, repeat, status) "
                    "VALUES (%s, %s, 'alice', 'VOICE', 'FALLBACK', 1, %s, %s, %s)",
                    (uuid.uuid4(), incident, kind, repeat, status),
                )
        shown = run(notifier_bin, env, "log", incident)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "alice" in line]
    assert len(lines) == 3
    cells = [[c.strip() for c in line.split("│")] for line in lines]
    assert "kind" in shown.stdout and "repeat" in shown.stdout
    assert sorted((c[5], c[6]) for c in cells) == [
        ("ack notice", ""),
        ("alert", ""),
        ("alert", "2"),
    ]


def test_the_worker_refuses_an_unusable_fcm_key_with_a_clear_error(
    notifier_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    key = tmp_path / "service-account.json"
    key.write_text("REPLACE_ME")  # the Kubernetes placeholder, never replaced
    env = {**cli_env, "NOTIFIER_FCM_SERVICE_ACCOUNT_FILE": str(key), "NOTIFIER_METRICS_PORT": "0"}
    started = run(notifier_bin, env, "worker", timeout=120)
    assert started.returncode == 1
    assert "error:" in started.stderr and "service account file" in started.stderr
    assert "Traceback" not in started.stderr


def test_vonage_named_without_its_settings_stops_the_worker(
    notifier_bin: Path, cli_env: dict[str, str]
) -> None:
    env = {
        **cli_env,
        "NOTIFIER_PROVIDERS": "SMS=twilio,vonage",
        "NOTIFIER_VONAGE_FROM": "+14155550001",
        "NOTIFIER_METRICS_PORT": "0",
    }
    for command in (["config"], ["worker"]):
        started = run(notifier_bin, env, *command, timeout=120)
        assert started.returncode == 1
        assert (
            "NOTIFIER_PROVIDERS names vonage for SMS, but NOTIFIER_VONAGE_API_KEY, "
            "NOTIFIER_VONAGE_API_SECRET are not set"
        ) in " ".join(started.stderr.split())  # the console wraps long lines
        assert "Traceback" not in started.stderr


def test_the_worker_refuses_an_unusable_vonage_key_with_a_clear_error(
    notifier_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    key = tmp_path / "private.key"
    key.write_text("REPLACE_ME")  # the Kubernetes placeholder, never replaced
    env = {
        **cli_env,
        "NOTIFIER_PROVIDERS": "VOICE=twilio,vonage",
        "NOTIFIER_VONAGE_FROM": "+14155550001",
        "NOTIFIER_VONAGE_APPLICATION_ID": "00000000-0000-0000-0000-000000000000",
        "NOTIFIER_VONAGE_PRIVATE_KEY_FILE": str(key),
        "NOTIFIER_METRICS_PORT": "0",
    }
    started = run(notifier_bin, env, "worker", timeout=120)
    assert started.returncode == 1
    assert "error:" in started.stderr and "vonage: private key file" in started.stderr
    assert "Traceback" not in started.stderr
