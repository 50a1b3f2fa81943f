"""`notifier bench` (`make bench`): the whole pipeline under load against the provider sandbox.

Phases, all in one run on one stack: the users directory filled (100k profiles by default);
incidents as fast as they can be published (throughput, projection catching up); incidents
at a paced rate (latency to the first provider request, event -> row); the worker's RSS; the
rebuild rate; the raw Kafka ceiling for the same message count. Saves the figures as JSON
and a PNG of latency and projection lag over time in bench-results/, and checks the goals.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from notifier.bench.cpu import CpuMeter
from notifier.bench.figures import check_goals, percentiles
from notifier.bench.plot import plot_run
from notifier.bench.raw import raw_kafka_rate
from notifier.bench.rebuild import rebuild_rate
from notifier.contracts.records import (
    Channel,
    ChannelPreference,
    IncidentOpened,
    Priority,
    SlackConnection,
    UserProfile,
)
from notifier.kafka_io import Publisher, end_offsets
from notifier.localprocs import sandbox_and_worker
from notifier.settings import Settings

RESULTS = Path(__file__).resolve().parents[2] / "bench-results"
CHANNELS = (Channel.EMAIL, Channel.SLACK, Channel.PUSH)
WARM_UP = 60  # incidents sent before any clock starts
Say = Callable[[str], None]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _clear(sandbox: str) -> None:
    request = urllib.request.Request(f"{sandbox}/_sandbox/requests", method="DELETE")
    urllib.request.urlopen(request, timeout=10).close()


def _wait_count(sandbox: str, target: int, timeout_s: float, say: Say) -> float:
    """Poll the sandbox until it has `target` requests; returns when it got there."""
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while True:
        count = _get(f"{sandbox}/_sandbox/stats")["count"]
        now = time.monotonic()
        if count >= target:
            return time.time()
        if now > deadline:
            raise RuntimeError(f"only {count} of {target} provider requests within {timeout_s} s")
        if now - last_report > 2:
            say(f"    ... {count}/{target} provider requests")
            last_report = now
        time.sleep(0.05)


def bench_user_id(n: int) -> str:
    """The id of the bench's n-th user."""
    return f"bench-user-{n:06d}"


def publish_users(publisher: Publisher, count: int, say: Say) -> float:
    """Publish `count` profiles reachable on the bench's channels; seconds it took."""
    started = time.monotonic()
    now = datetime.now(UTC)
    for n in range(count):
        user_id = bench_user_id(n)
        profile = UserProfile(
            user_id=user_id,
            name=user_id,
            updated_at=now,
            email=f"{user_id}@example.com",
            push_tokens=[f"tok-{user_id}"],
            slack=SlackConnection(f"U{n:08d}", True),
            preferences=[ChannelPreference(c, True, i) for i, c in enumerate(CHANNELS)],
        )
        publisher.publish("users", user_id, profile)
        if n and n % 25_000 == 0:
            say(f"    ... {n}/{count} users")
    publisher.flush(120)
    return time.monotonic() - started


class LagSampler:
    """Samples, in a thread, how many delivery events the projection has not stored yet."""

    def __init__(self, settings: Settings, every_s: float = 0.5) -> None:
        self.settings = settings
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []  # (time.time(), events behind)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import psycopg

        from projections.database import database_url

        with psycopg.connect(database_url(self.settings), autocommit=True) as conn:
            while not self._stop.is_set():
                self.samples.append((time.time(), projection_behind(self.settings, conn)))
                self._stop.wait(self.every_s)


def projection_behind(
    settings: Settings, conn: Any, logical: tuple[str, ...] = ("delivery.events",)
) -> int:
    """Messages of the `logical` topics the projection has not stored yet."""
    from notifier.topics import full_name

    behind = 0
    for name in logical:
        topic = full_name(settings, name)
        ends = {p: o for p, o in end_offsets(settings, name).items() if o}
        stored: dict[int, int] = dict(
            conn.execute(
                "SELECT partition, next_offset FROM projection_offset WHERE topic = %s", (topic,)
            ).fetchall()
        )
        behind += sum(max(0, o - stored.get(p, 0)) for p, o in ends.items())
    return behind


def _wait_projection(settings: Settings, say: Say, timeout_s: float = 300) -> float:
    """Wait until the projection's stored offsets reach the end of every topic it folds
    (the users too: a worker's first start projects every profile once, which must not
    be measured as the cost of notifications)."""
    import psycopg

    from projections.database import database_url
    from projections.notification_log import TOPICS

    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        while True:
            behind = projection_behind(settings, conn, TOPICS)
            if behind <= 0:
                return time.time()
            if time.monotonic() > deadline:
                raise RuntimeError(f"projection still {behind} messages behind")
            time.sleep(0.1)


def run_bench(
    settings: Settings,
    say: Say,
    *,
    incidents: int = 2000,
    rate: int = 200,
    paced_s: float = 10.0,
    users: int = 100_000,
    rebuild_events: int = 1_000_000,
    results_dir: Path = RESULTS,
    shape: Shape | None = None,
) -> dict[str, Any]:
    """Run every phase on topics of its own (deleted at the end) and return (and save) the
    figures."""
    settings = scratch_topics(settings, say)
    try:
        return _run(
            settings,
            say,
            incidents,
            rate,
            paced_s,
            users,
            rebuild_events,
            results_dir,
            shape or Shape(),
        )
    finally:
        drop_scratch_topics(settings, say)


def scratch_topics(base: Settings, say: Say) -> Settings:
    """Settings with a topic prefix of this run, its topics created and subjects registered:
    every run starts from empty tables and an empty users directory, so its figures do not
    depend on what earlier runs left behind."""
    from notifier.contracts.registry import register_subjects
    from notifier.topics import ensure_topics, subjects

    prefix = f"{base.topic_prefix}bench{uuid.uuid4().hex[:6]}."
    settings = base.model_copy(update={"topic_prefix": prefix})
    say(f"topics of this run: {prefix}*")
    ensure_topics(settings.kafka_bootstrap, settings)
    if settings.schema_registry_url:
        register_subjects(settings.schema_registry_url, subjects(settings))
    return settings


def drop_scratch_topics(settings: Settings, say: Say) -> None:
    """Delete every topic of the run (its workers' changelogs included)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
    for fut in admin.delete_topics(ours, operation_timeout=30).values() if ours else []:
        fut.result()
    say(f"deleted the run's {len(ours)} topics")


@dataclass(frozen=True)
class Shape:
    """How the bench's load looks beyond its sizes: people per incident, worker processes,
    how long the sandbox waits before it answers, whether the worker is profiled, and
    whether the projection runs in a process of its own (`notifier projector`)."""

    users_per_incident: int = 1
    workers: int = 1
    provider_latency_ms: int = 0
    profile: bool = True
    projector: bool = True


def _run(
    settings: Settings,
    say: Say,
    incidents: int,
    rate: int,
    paced_s: float,
    users: int,
    rebuild_events: int,
    results_dir: Path,
    shape: Shape,
) -> dict[str, Any]:
    from notifier.contracts.factory import build_codec

    codec = build_codec(settings)
    publisher = Publisher(settings, codec)
    logs = settings.stack_dir / "bench"
    per_incident = shape.users_per_incident * len(CHANNELS)  # notifications of one incident
    # every file of the run shares this name: JSON, PNG and the worker's profile
    stem = results_dir / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "incidents": incidents,
        "users": users,
        "users_per_incident": shape.users_per_incident,
        "channels_per_incident": len(CHANNELS),
        "workers": shape.workers,
        "projector": shape.projector,
        "provider_latency_ms": shape.provider_latency_ms,
        "paced_rate": rate,
        "paced_seconds": paced_s,
        "event_loop": settings.event_loop,
    }
    say(f"publishing {users} users with {', '.join(c.value.lower() for c in CHANNELS)}")
    results["users_publish_seconds"] = round(publish_users(publisher, users, say), 1)

    def incident(n: int) -> IncidentOpened:
        stamp = uuid.uuid4().hex[:10]
        return IncidentOpened(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            incident_id=f"bench-{stamp}-{n}",
            title="bench",
            priority=Priority.HIGH,
            escalation_level=1,
            user_ids=[
                bench_user_id((n * shape.users_per_incident + k) % users)
                for k in range(shape.users_per_incident)
            ],
        )

    extra = {
        "NOTIFIER_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFIER_EMAIL_PROVIDER": "sendgrid",
        "NOTIFIER_RATE_LIMIT_PER_MIN": "6000000",
        "NOTIFIER_CHANNEL_CONCURRENCY": "50",
        "NOTIFIER_LOG_LEVEL": "WARNING",
    }
    latency_points: list[tuple[float, float]] = []
    started_services = sandbox_and_worker(
        logs, extra, workers=shape.workers, projector=shape.projector
    )
    with started_services as (sandbox, worker, _, workers, projector), LagSampler(settings) as lag:
        pids = [w.pid for w in workers]
        apart = [projector.pid] if projector is not None else []
        say(
            f"sandbox {sandbox}, worker pid(s) {', '.join(map(str, pids))}"
            + (f", projector pid {apart[0]}" if apart else "")
            + "; warming up"
        )
        if shape.provider_latency_ms:
            _slow_providers(sandbox, shape.provider_latency_ms)
            say(f"    the sandbox answers each request after {shape.provider_latency_ms} ms")
        # enough incidents to land on every partition: the clock starts once each of the
        # worker's consumers has been assigned, fetched and sent, not during its start-up
        for event in [incident(n) for n in range(WARM_UP)]:
            publisher.publish("incidents", event.incident_id, event)
        publisher.flush()
        _wait_count(sandbox, WARM_UP * per_incident, 300, say)
        _wait_projection(settings, say)

        events_before = sum(end_offsets(settings, "delivery.events").values())
        say(f"phase 1: {incidents} incidents as fast as possible")
        _clear(sandbox)
        meter = CpuMeter(pids, settings.stack_dir, projector_pids=apart)
        cpu_before = meter.snapshot()
        started = time.time()
        for n in range(incidents):
            event = incident(n)
            publisher.publish("incidents", event.incident_id, event)
        publisher.flush()
        published = time.time()
        finished = _wait_count(sandbox, incidents * per_incident, 600, say)
        sends = incidents * per_incident
        results["throughput"] = {
            "notifications": sends,
            "seconds": round(finished - started, 2),
            "notifications_per_s": round(sends / (finished - started), 1),
            "publish_seconds": round(published - started, 2),
        }
        say(
            f"    {sends} notifications in {finished - started:.1f} s = "
            f"{sends / (finished - started):.0f}/s"
        )
        caught_up = _wait_projection(settings, say)
        # CPU, not wall time: what each part costs per notification, which a busy machine
        # does not skew; their sum bounds what this machine can do with every part on it
        cpu = {k: round(v * 1000 / sends, 3) for k, v in meter.since(cpu_before).items()}
        # the engine: what a deployment runs, without the fake provider and the load generator
        engine = sum(v for k, v in cpu.items() if k not in ("sandbox", "bench publisher"))
        results["cpu_ms_per_notification"] = {
            **cpu,
            "engine": round(engine, 3),
            "total": round(sum(cpu.values()), 3),
        }
        results["throughput"]["worker_cpu_ms_per_notification"] = cpu["worker"]
        # every core busy with nothing else: the most this machine could do at these costs
        cores = psutil.cpu_count() or 1
        results["cpu_bound_notifications_per_s"] = round(cores * 1000 / sum(cpu.values()), 1)
        say(f"    CPU ms per notification: {results['cpu_ms_per_notification']}")
        events = sum(end_offsets(settings, "delivery.events").values()) - events_before
        results["projection"] = {
            "events": events,
            "seconds": round(caught_up - started, 2),
            "events_per_s": round(events / (caught_up - started), 1),
            "caught_up_after_last_send_s": round(caught_up - finished, 2),
        }
        say(
            f"    projection: {events} events into PostgreSQL, caught up "
            f"{caught_up - finished:.1f} s after the last send"
        )

        say(f"phase 2: {rate} incidents/s for {paced_s:.0f} s, latency to first provider request")
        _clear(sandbox)
        sent_at: dict[str, float] = {}
        total = int(rate * paced_s)
        t0 = time.monotonic()
        for n in range(total):
            due = t0 + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            event = incident(n)
            publisher.publish("incidents", event.incident_id, event)
            sent_at[event.incident_id] = event.occurred_at.timestamp()
        publisher.flush()
        _wait_count(sandbox, total * per_incident, 600, say)
        first: dict[str, float] = {}
        for item in _get(f"{sandbox}/_sandbox/requests"):
            incident_id = item.get("incident_id")
            if incident_id in sent_at:
                first[incident_id] = min(
                    first.get(incident_id, item["started_at"]), item["started_at"]
                )
        latencies = [(first[i] - sent_at[i]) * 1000 for i in first]
        latency_points = sorted(
            (sent_at[i] - started, (first[i] - sent_at[i]) * 1000) for i in first
        )
        results["latency_ms"] = {"incidents": len(latencies), **percentiles(latencies)}
        say(f"    incident -> first provider request: {results['latency_ms']}")

        _wait_projection(settings, say)
        visibility = _visibility_ms(settings, list(sent_at))
        results["event_to_row_ms"] = {"rows": len(visibility), **percentiles(visibility)}
        say(f"    DeliverySent -> row written: {results['event_to_row_ms']}")
        results["worker_rss_mb"] = max(_rss_mb(pid) for pid in pids)
        say(f"    worker RSS with {users} users: {results['worker_rss_mb']} MB")
        if shape.profile:
            say(f"profile: {incidents} incidents as fast as possible, worker pid {worker.pid}")
            _clear(sandbox)
            with profiled(worker.pid, stem.with_suffix(".speedscope.json"), say) as profile:
                for n in range(incidents):
                    event = incident(n)
                    publisher.publish("incidents", event.incident_id, event)
                publisher.flush()
                _wait_count(sandbox, incidents * per_incident, 600, say)
            if profile.exists():
                results["profile"] = str(profile)
    lag_points = [(at - started, behind) for at, behind in lag.samples if at >= started]
    results["projection"]["max_lag_events"] = max((b for _, b in lag_points), default=0)

    if rebuild_events:
        say(f"rebuild: {rebuild_events} synthetic delivery events, folded into a fresh database")
        results["rebuild"] = rebuild_rate(settings, codec, rebuild_events, say)
        say(f"    {results['rebuild']['events_per_s']} events/s")
    say(f"raw Kafka: {incidents * per_incident} messages produced and consumed")
    raw = raw_kafka_rate(settings, incidents * per_incident)
    results["raw_kafka_msgs_per_s"] = round(raw, 1)
    results["share_of_raw"] = round(results["throughput"]["notifications_per_s"] / raw, 4)
    results["goals"] = check_goals(results)
    codec.close()

    results_dir.mkdir(parents=True, exist_ok=True)
    results["plot"] = str(
        plot_run(
            stem.with_suffix(".png"),
            latency_points,
            lag_points,
            f"notifier bench: {rate} incidents/s paced after {incidents} as fast as possible",
        )
    )
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    say(f"saved {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return results


def _slow_providers(sandbox: str, latency_ms: int) -> None:
    """Make the sandbox wait `latency_ms` before answering any of the bench's providers."""
    for provider in ("sendgrid", "slack", "fcm"):
        request = urllib.request.Request(
            f"{sandbox}/_sandbox/faults/{provider}",
            data=json.dumps({"latency_ms": latency_ms}).encode(),
            headers={"Content-Type": "application/json"},
            method="PUT",
        )
        urllib.request.urlopen(request, timeout=10).close()


@contextmanager
def profiled(pid: int, out: Path, say: Say) -> Iterator[Path]:
    """Sample `pid`'s Python stacks with py-spy while the block runs, into a speedscope file
    (open it at speedscope.app or with `py-spy`'s viewer); skipped, with a word, without
    py-spy. Only threads holding the GIL are sampled: what the interpreter spends, not
    time waiting in a poll."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        say("    no py-spy on the PATH: no profile (pip install py-spy)")
        yield out
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--gil", "--rate", "250"]
    argv += ["--format", "speedscope", "--output", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield out
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes the file when interrupted
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if out.exists():
            say(f"    worker profile: {out}")
        else:
            say(f"    py-spy wrote no profile: {err.decode(errors='replace')[-300:]}")


def _visibility_ms(settings: Settings, incident_ids: list[str]) -> list[float]:
    """Per SENT row: from its DeliverySent event to the row's write in PostgreSQL."""
    import psycopg

    from projections.database import database_url

    with psycopg.connect(database_url(settings)) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM updated_at - sent_at) * 1000 FROM notification_log "
            "WHERE incident_id = ANY(%s) AND status = 'SENT'",
            (incident_ids,),
        ).fetchall()
    return [float(r[0]) for r in rows]


def _rss_mb(pid: int) -> float:
    import psutil

    try:
        return round(psutil.Process(pid).memory_info().rss / 1e6, 1)
    except psutil.Error:
        return -1.0
