"""The drill from start to verdict: sandbox with faults, users, workers, incidents published
at a pace while the faults run, then wait until everything settled, collect, verify, save."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack import kafka, postgres
from devstack.config import StackConfig
from notifier.chaos import faults, verify
from notifier.chaos.inflight import AttemptTimes, disruptions_from_journal
from notifier.chaos.plan import CHANNEL_SETS, FAULTS, WORKER_ENV, Plan
from notifier.localprocs import child, free_port, notifier_command, wait_http
from notifier.settings import Settings

RESULTS = Path(__file__).resolve().parents[2] / "chaos-results"
PROGRESS_EVERY_S = 5.0
STALLED_S = 120.0  # no new terminal row and no provider request for this long: stop waiting


class DrillError(RuntimeError):
    """The drill could not run (not its verdict: that is the summary)."""


@dataclass(frozen=True)
class Options:
    """What `notifier chaos` was asked for."""

    incidents: int = 10_000
    workers: int = 2
    rate: float = 100.0  # incidents published per second
    kill_every_s: float = 20.0
    kills: int = 6
    first_kill_s: float = 10.0
    broker_node: int = 2
    broker_at_s: float = 25.0
    broker_down_s: float = 20.0
    pg_at_s: float = 55.0
    pg_down_s: float = 30.0
    garbage: int = 20
    settle_timeout_s: float = 900.0
    short: bool = False

    @classmethod
    def short_run(cls, **overrides: Any) -> Options:
        """The CI-sized drill: a few hundred incidents, two kills, short outages."""
        base = cls(
            incidents=400,
            rate=20.0,
            kill_every_s=12.0,
            kills=2,
            first_kill_s=6.0,
            broker_at_s=3.0,
            broker_down_s=10.0,
            pg_at_s=12.0,
            pg_down_s=8.0,
            garbage=8,
            settle_timeout_s=240.0,
            short=True,
        )
        return replace(base, **overrides)


def stack_config(settings: Settings) -> StackConfig:
    """The local stack the settings point at, with the broker count its data was laid out for;
    DrillError unless it runs three brokers and its own PostgreSQL."""
    first = settings.kafka_bootstrap.split(",")[0]
    port = int(first.rsplit(":", 1)[1])
    config = StackConfig(
        name=settings.stack,
        kafka_port=port,
        state_root=settings.state_dir,
        cache_dir=StackConfig().cache_dir,
    )
    config = replace(config, brokers=kafka.recorded_brokers(config) or 1)
    if config.brokers < 3 or len(kafka.running_nodes(config)) < 3:
        raise DrillError(
            f"stack '{config.name}' at {settings.kafka_bootstrap} does not run three Kafka "
            "nodes: start it with `make chaos` (STACK=chaos BROKERS=3)"
        )
    if postgres.postmaster_pid(config) is None:
        raise DrillError(
            f"stack '{config.name}' does not run its own PostgreSQL: the drill stops and starts "
            "it, so it needs the embedded server of `make up`"
        )
    return config


def _http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, connect_timeout=3, autocommit=True)


def terminal_count(database_url: str, run_id: str) -> int | None:
    """Rows of the run in a terminal status; None while PostgreSQL does not answer."""
    import psycopg

    try:
        with _connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM notification_log WHERE incident_id LIKE %s "
                "AND status = ANY(%s)",
                (f"{run_id}-%", sorted(verify.TERMINAL)),
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return None


def attempts_sum(database_url: str, run_id: str) -> int | None:
    """Attempts recorded for the run's notifications; None while PostgreSQL does not answer."""
    import psycopg

    try:
        with _connect(database_url) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(attempt_count), 0) FROM notification_log "
                "WHERE incident_id LIKE %s",
                (f"{run_id}-%",),
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return None


def read_rows(
    database_url: str, run_id: str
) -> tuple[list[verify.Row], dict[str, list[int]], dict[str, int], dict[str, list[AttemptTimes]]]:
    """The run's notification_log rows, each one's attempt numbers, how many of its
    attempts failed before reaching the provider (no connection made), and its attempts'
    times (epoch seconds)."""
    with _connect(database_url) as conn:
        rows = [
            verify.Row(*r)
            for r in conn.execute(
                "SELECT notification_id::text, incident_id, user_id, channel, status, "
                "attempt_count, escalation_level, kind, repeat, "
                "extract(epoch FROM queued_at)::float8 FROM notification_log "
                "WHERE incident_id LIKE %s",
                (f"{run_id}-%",),
            ).fetchall()
        ]
        attempts: dict[str, list[int]] = {}
        unreached: dict[str, int] = {}
        timings: dict[str, list[AttemptTimes]] = {}
        for nid, attempt, error, started, finished, last in conn.execute(
            "SELECT a.notification_id::text, a.attempt, a.error, "
            "extract(epoch FROM a.started_at)::float8, extract(epoch FROM a.finished_at)::float8, "
            "extract(epoch FROM a.last_requested_at)::float8 FROM notification_attempt a "
            "JOIN notification_log l USING (notification_id) WHERE l.incident_id LIKE %s",
            (f"{run_id}-%",),
        ).fetchall():
            attempts.setdefault(nid, []).append(int(attempt))
            timings.setdefault(nid, []).append(AttemptTimes(int(attempt), started, finished, last))
            if verify.never_connected(error):
                unreached[nid] = unreached.get(nid, 0) + 1
    return rows, attempts, unreached, timings


def read_dead_letters(settings: Settings, since: datetime) -> list[verify.DeadLetterSeen]:
    """Dead letters written since the drill started."""
    from notifier.contracts.factory import build_codec
    from notifier.deadletters import read_dead_letters as read_all

    codec = build_codec(settings)
    try:
        return [
            verify.DeadLetterSeen(
                key=(e.record.key or b"").decode("utf-8", "replace"),
                source_topic=e.record.source_topic,
                source_partition=e.record.source_partition,
                source_offset=e.record.source_offset,
                stage=e.record.stage,
                reason=e.record.reason,
            )
            for e in read_all(settings, codec, idle_s=30.0)
            if e.record.occurred_at >= since
        ]
    finally:
        codec.close()


def prepare(settings: Settings) -> None:
    """Topics (the drill's retry delays have topics of their own), subjects, migrations."""
    from notifier.contracts.registry import register_subjects
    from notifier.topics import ensure_topics, subjects
    from projections.migrate import migrate

    ensure_topics(settings.kafka_bootstrap, settings)
    if settings.schema_registry_url:
        register_subjects(settings.schema_registry_url, subjects(settings))
    assert settings.database_url is not None
    migrate(settings.database_url.get_secret_value())


def run_drill(
    base: Settings, options: Options, say: Callable[[str], None]
) -> tuple[verify.Verdict, dict[str, Any], Path]:
    """Run the drill; returns the verdict, the summary written and where it was written."""
    if base.database_url is None:
        raise DrillError("no DATABASE_URL: source .stack/<stack>/stack.env or run `make chaos`")
    config = stack_config(base)
    delays = tuple(int(d) for d in WORKER_ENV["NOTIFIER_RETRY_DELAYS_S"].split(","))
    settings = base.model_copy(update={"retry_delays_s": delays})
    database_url = settings.database_url.get_secret_value() if settings.database_url else ""
    run_id = f"chaos{time.strftime('%H%M%S')}{secrets.token_hex(2)}"
    plan = Plan(run_id, options.incidents, garbage=options.garbage)
    expected = plan.expected()
    logs = settings.stack_dir / "chaos" / run_id
    logs.mkdir(parents=True, exist_ok=True)
    say(
        f"chaos drill {run_id}: {options.incidents} incidents -> {len(expected)} notifications, "
        f"{options.workers} workers, {len(kafka.running_nodes(config))} brokers; logs in {logs}"
    )
    prepare(settings)

    from adapters.sandbox.server import sandbox_env
    from notifier.contracts.factory import build_codec
    from notifier.kafka_io import Publisher

    port, smtp_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")},
        "NOTIFIER_STACK": settings.stack,
        "NOTIFIER_STATE_DIR": str(settings.state_dir),
        "NOTIFIER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFIER_TOPIC_PREFIX": settings.topic_prefix,
        "DATABASE_URL": database_url,
        "SCHEMA_REGISTRY_URL": settings.schema_registry_url or "",
        **sandbox_env("127.0.0.1", port, smtp_port),
        **WORKER_ENV,
    }
    journal = faults.Journal(say)
    # the drill's own clients: a broker away or a server restarted is expected here
    for name in ("pgserver", "notifier.kafka", "notifier.chaos.kafka"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started_at = datetime.now(UTC)
    with child(
        notifier_command("sandbox", "--port", str(port), "--smtp-port", str(smtp_port)),
        env,
        logs / "sandbox.log",
    ):
        wait_http(f"{sandbox_url}/_sandbox/stats")
        for provider, fault in FAULTS.items():
            _http("PUT", f"{sandbox_url}/_sandbox/faults/{provider}", fault)
        codec = build_codec(settings)
        publisher = Publisher(settings, codec)
        for profile in plan.profiles(sandbox_url):
            publisher.publish("users", profile.user_id, profile)
        publisher.flush()
        workers = faults.Workers(options.workers, env, logs, journal)
        drill = faults.Drill()
        try:
            workers.start_all()
            say(f"waiting for {options.workers} workers to be ready...")
            _wait(
                workers.ready,
                180,
                "workers ready",
                workers.revive_or_restart,
                workers.describe,
            )
            journal.started = time.monotonic()
            journal.note("drill starts")
            drill.spawn(
                "kills",
                faults.kill_loop,
                workers,
                options.kill_every_s,
                options.kills,
                options.first_kill_s,
            )
            drill.spawn(
                "broker",
                faults.broker_outage,
                config,
                options.broker_node,
                options.broker_at_s,
                options.broker_down_s,
                journal,
            )
            drill.spawn(
                "postgres",
                faults.postgres_outage,
                config,
                options.pg_at_s,
                options.pg_down_s,
                journal,
            )
            _publish(plan, options.rate, settings, publisher, say)
            journal.note("all incidents published", incidents=options.incidents)
            while drill.running():
                workers.revive()
                _progress(say, journal, sandbox_url, database_url, run_id, len(expected))
                drill.stop.wait(PROGRESS_EVERY_S)  # the actions run on their own schedule
            drill.finish()
            journal.note("drill actions done")
            _settle(workers, options, sandbox_url, database_url, run_id, len(expected), journal)
            journal.note("done waiting")
            lag = workers.lag()
            if lag:  # the gauge samples every 5 s; kept as evidence, not judged
                journal.note("consumer lag reported when settled", partitions=lag)
        finally:
            drill.finish(abort=True)
            workers.stop_all()
            codec.close()
        drill_end = time.time()
        rows, attempts, unreached, timings = read_rows(database_url, run_id)
        # the sandbox serves this run only: every request it recorded is the drill's
        requests = [
            {**r, "notification_id": plan.attribute(r)}
            for r in _http("GET", f"{sandbox_url}/_sandbox/requests")
        ]
    dead = read_dead_letters(settings, started_at)
    by_kind = {
        "kills": journal.count("SIGKILL worker"),
        "broker_stops": journal.count("broker stopped"),
        "postgres_stops": journal.count("postgres stopped"),
        "unexpected_worker_exits": len(workers.unexpected_exits),
    }
    disruptions = disruptions_from_journal(journal.entries, drill_end)
    batch = int(Settings.model_fields["batch_size"].default)  # the workers' (not passed on)
    channels = len({c for s in CHANNEL_SETS for c in s})
    verdict = verify.verify(
        expected,
        rows,
        attempts,
        unreached,
        requests,
        dead,
        {plan.garbage_key(g) for g in range(plan.garbage)},
        disruptions,
        batch * channels,
        timings,
    )
    if workers.unexpected_exits:
        verdict.add("workers that exited on their own", len(workers.unexpected_exits), False)
    if workers.stuck_at_start:  # shown, not failed: the drill judges loss; this is a finding
        verdict.add(
            "workers not ready 60 s after start (restarted)",
            len(workers.stuck_at_start),
            True,
            "a start-up hang: see stuck_at_start in the summary",
        )
    if drill.errors:
        verdict.add("drill actions that failed", len(drill.errors), False, "; ".join(drill.errors))
    summary = {
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "seconds": round(time.monotonic() - journal.started, 1),
        "options": asdict(options),
        "worker_settings": WORKER_ENV,
        "faults": FAULTS,
        "stack": {"name": config.name, "bootstrap": settings.kafka_bootstrap},
        "disruptions": sum(by_kind.values()),
        "disruptions_by_kind": by_kind,
        "journal": journal.entries,
        "unexpected_worker_exits": workers.unexpected_exits,
        "stuck_at_start": workers.stuck_at_start,
        **verdict.as_json(),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{run_id}.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    return verdict, summary, path


def _wait(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    meanwhile: Callable[[], None] | None = None,
    explain: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise DrillError(f"{what}: not within {timeout_s:.0f} s{detail}")
        if meanwhile is not None:
            meanwhile()
        time.sleep(0.5)


def _publish(
    plan: Plan, rate: float, settings: Settings, publisher: Any, say: Callable[[str], None]
) -> None:
    """Publish the incidents at `rate` per second, the garbage in between."""
    from confluent_kafka import Producer

    from notifier.topics import full_name

    raw = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "logger": logging.getLogger("notifier.chaos.kafka"),
        }
    )
    garbage_at: dict[int, list[int]] = {}
    for g, i in plan.garbage_at().items():
        garbage_at.setdefault(i, []).append(g)
    garbage = list(plan.garbage_messages())
    began = time.monotonic()
    last = began
    for i in range(plan.incidents):
        event = plan.incident(i)
        publisher.publish("incidents", event.incident_id, event)
        for g in garbage_at.get(i, []):
            topic, key, value = garbage[g]
            raw.produce(full_name(settings, topic), key=key, value=value)
        due = began + (i + 1) / rate
        if due > time.monotonic():  # ahead of the pace: make sure it is out, then wait
            publisher.flush(120)
            raw.poll(0)
            time.sleep(max(0.0, due - time.monotonic()))
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            say(f"    published {i + 1}/{plan.incidents} incidents")
    publisher.flush(120)
    if raw.flush(120):
        raise DrillError("garbage messages not acknowledged by Kafka within 120 s")


def _progress(
    say: Callable[[str], None],
    journal: faults.Journal,
    sandbox_url: str,
    database_url: str,
    run_id: str,
    expected: int,
) -> int | None:
    """One progress line; returns the terminal rows (None while PostgreSQL is down)."""
    terminal = terminal_count(database_url, run_id)
    try:
        requests = _http("GET", f"{sandbox_url}/_sandbox/stats")["count"]
    except OSError:
        requests = "?"
    at = time.monotonic() - journal.started
    shown = "postgres not answering" if terminal is None else f"{terminal}/{expected}"
    say(f"    [{at:7.1f} s] terminal rows {shown}, provider requests {requests}")
    return terminal


def _settle(
    workers: faults.Workers,
    options: Options,
    sandbox_url: str,
    database_url: str,
    run_id: str,
    expected: int,
    journal: faults.Journal,
) -> None:
    """Wait until every expected row is terminal, then until nothing moves any more: no lag
    in the workers and the sandbox's request count unchanged over three polls."""
    deadline = time.monotonic() + options.settle_timeout_s
    last: tuple[int | None, int] | None = None
    still_since = time.monotonic()
    while True:
        workers.revive()
        terminal = _progress(journal.say, journal, sandbox_url, database_url, run_id, expected)
        if terminal is not None and terminal >= expected:
            break
        if time.monotonic() > deadline:
            journal.note("not settled", within_s=options.settle_timeout_s)
            return
        now = (terminal, int(_http("GET", f"{sandbox_url}/_sandbox/stats")["count"]))
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > STALLED_S:
            # far beyond every retry delay, send timeout and session timeout of the drill:
            # what is missing now will not come; the checks say what it is
            journal.note("stalled: nothing moved", for_s=STALLED_S, terminal=terminal)
            return
        time.sleep(PROGRESS_EVERY_S)
    # then quiet: no new provider request and no new attempt over three polls 2.5 s apart
    # (longer than the longest retry delay of the drill, jitter included)
    seen: list[tuple[int, int | None]] = []
    quiet_deadline = time.monotonic() + 120
    while time.monotonic() < quiet_deadline:
        requests = int(_http("GET", f"{sandbox_url}/_sandbox/stats")["count"])
        seen.append((requests, attempts_sum(database_url, run_id)))
        if len(seen) >= 3 and len(set(seen[-3:])) == 1 and seen[-1][1] is not None:
            return
        time.sleep(2.5)
    journal.note("not quiet after 120 s", last=seen[-3:])
