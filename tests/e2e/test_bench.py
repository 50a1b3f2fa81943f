"""`notifier bench` end to end at a toy size: every phase runs against the real stack and
the sandbox, the figures are printed, and the JSON and the PNG are written."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from confluent_kafka.admin import AdminClient

from tests.conftest import scratch_database

pytestmark = pytest.mark.e2e


@pytest.fixture
def bench_database(cli_env: dict[str, str]) -> Iterator[str]:
    """A database for the bench alone, dropped afterwards."""
    base = cli_env["DATABASE_URL"]
    with scratch_database(base, f"{urlsplit(base).path.strip('/')}_bench") as url:
        yield url


def test_the_bench_runs_every_phase_and_saves_its_figures(
    notifier_bin: Path, cli_env: dict[str, str], bench_database: str, tmp_path: Path
) -> None:
    # the bench makes topics of its own (its worker joins no test's group) and gets a
    # database of its own: its rows must not show in another test's NotificationLog
    env = {**cli_env, "DATABASE_URL": bench_database}
    done = subprocess.run([str(notifier_bin), "db", "migrate"], env=env, capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    results = tmp_path / "results"
    run = subprocess.run(
        [
            str(notifier_bin),
            "bench",
            "--incidents=30",
            "--rate=20",
            "--seconds=1",
            "--users=50",
            "--users-per-incident=2",
            "--rebuild-events=300",
            f"--results-dir={results}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "goals" in run.stdout and "share of raw ceiling" in run.stdout

    [saved] = [p for p in results.glob("bench-*.json") if ".speedscope" not in p.name]
    figures = json.loads(saved.read_text())
    assert figures["throughput"]["notifications"] == 180  # 30 incidents x 2 people x 3
    assert figures["throughput"]["notifications_per_s"] > 0
    assert figures["latency_ms"]["incidents"] == 20
    assert figures["event_to_row_ms"]["rows"] == 120  # every paced send has its row
    cpu = figures["cpu_ms_per_notification"]
    assert cpu["engine"] == pytest.approx(
        sum(
            v for k, v in cpu.items() if k not in ("sandbox", "bench publisher", "engine", "total")
        ),
        abs=0.01,
    )
    profile = json.loads(Path(figures["profile"]).read_text())  # py-spy's speedscope file
    assert profile["profiles"] and profile["shared"]["frames"]
    assert figures["rebuild"]["events"] == 300
    assert figures["raw_kafka_msgs_per_s"] > 0 and figures["worker_rss_mb"] > 0
    assert {g["verdict"] for g in figures["goals"]} <= {"met", "missed"}
    png = Path(figures["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    admin = AdminClient({"bootstrap.servers": env["NOTIFIER_KAFKA_BOOTSTRAP"]})
    left = [
        t
        for t in admin.list_topics(timeout=10).topics
        if ".bench" in t and t.startswith(env["NOTIFIER_TOPIC_PREFIX"])
    ]
    assert left == []  # the run's scratch topics are gone
