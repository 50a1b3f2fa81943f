"""The NotificationLog projection's own cost: CPU per delivery event, in the worker and in
PostgreSQL, measured alone (no Kafka, no worker), per batch size.

    .venv/bin/python -m tests.perf.projection_load [--notifications 3000] [--rounds 3]
        [--batch-sizes 50,200,1000] [--lag 300] [--callbacks] [--database-url URL]
        [--profile DIR]

With the test stack's environment (NOTIFIER_STATE_DIR=/work/main/.stack NOTIFIER_STACK=test)
the database URL is the stack's PostgreSQL, as the tests find it; a database of its own is
created there, migrated, and dropped at the end. Each round builds, for `--notifications` new
notifications, the three delivery events a channel agent's happy path leaves on
delivery.events (NotificationQueued from the dispatcher, then DeliveryAttempted and
DeliverySent from the channel agent, with the ids, fields and clocks they use), interleaved
as the topic holds them under load: a notification's attempt and send come `--lag` events
after its queueing, so with small batches a row is written in two batches, as in `make bench`.
With `--callbacks`, every email and SMS also gets its provider's delivery receipt (a
ProviderCallback on provider.callbacks, as the bridge publishes it) `--lag` events later.
The stream is cut into batches of each size, and each batch applied with `apply_batch` in its
own transaction with its offsets, as the runner does. Timed: this process's CPU (user +
system, `time.process_time`) and the PostgreSQL backend's (utime + stime of its process, from
/proc; the server runs on this machine), over every batch of the round; building the events is
not counted. The median round of each batch size is printed, in microseconds per event, with
the least (the machine is shared: the least is the cost with the least interference), and how
many updates of notification_log and notification_attempt were heap-only (HOT).
With `--profile`, py-spy samples this process through the whole run into a speedscope file.
Not a test: pytest collects no function here.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    DeliveryAttempted,
    DeliverySent,
    NotificationKind,
    NotificationQueued,
    Priority,
    ProviderCallback,
    Tier,
)
from notifier.domain import ids
from notifier.settings import Settings
from projections.database import database_url
from projections.migrate import migrate
from projections.notification_log import Consumed, apply_batch

PARTITIONS = 6
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
PROVIDERS = {Channel.EMAIL: "sendgrid", Channel.SMS: "twilio", Channel.PUSH: "fcm"}


@dataclass(frozen=True)
class Round:
    """One batch size's round: events applied and the CPU seconds each side spent."""

    events: int
    batches: int
    worker_s: float
    postgres_s: float
    wall_s: float


def notification_events(
    stamp: str, n: int, at: datetime
) -> tuple[NotificationQueued, DeliveryAttempted, DeliverySent]:
    """The queued, attempted and sent events of notification `n` (one user, one channel of
    a three-person incident), shaped as the dispatcher and the channel agent make them."""
    incident = f"load-{stamp}-{n // 9}"
    user = f"user-{n % 3}"
    channel = CHANNELS[(n // 3) % 3]
    nid = ids.notification_id(incident, 1, user, channel)
    command = ids.event_id(nid, 1)
    common: dict[str, Any] = {
        "notification_id": nid,
        "incident_id": incident,
        "user_id": user,
        "channel": channel,
    }
    return (
        NotificationQueued(
            event_id=ids.event_id(incident, "queued", nid),
            occurred_at=at,
            tier=Tier.PRIMARY,
            escalation_level=1,
            priority=Priority.HIGH,
            kind=NotificationKind.ALERT,
            **common,
        ),
        DeliveryAttempted(
            event_id=ids.event_id(command, "attempted"),
            occurred_at=at + timedelta(milliseconds=40),
            attempt=1,
            provider=PROVIDERS[channel],
            **common,
        ),
        DeliverySent(
            event_id=ids.event_id(command, "sent"),
            occurred_at=at + timedelta(milliseconds=90),
            attempt=1,
            provider=PROVIDERS[channel],
            provider_message_id=f"msg-{uuid.uuid4().hex}",
            latency_ms=50,
            **common,
        ),
    )


def delivered(sent: DeliverySent) -> ProviderCallback:
    """The provider's delivery receipt of `sent`, as the bridge publishes it."""
    return ProviderCallback(
        event_id=ids.event_id(sent.provider_message_id, "delivered"),
        occurred_at=sent.occurred_at + timedelta(seconds=2),
        received_at=sent.occurred_at + timedelta(seconds=2, milliseconds=30),
        incident_id=sent.incident_id,
        notification_id=sent.notification_id,
        channel=sent.channel,
        provider=sent.provider,
        status=CallbackStatus.DELIVERED,
        raw_status="delivered",
        provider_message_id=sent.provider_message_id,
        user_id=sent.user_id,
    )


def stream(notifications: int, lag: int, callbacks: bool = False) -> list[Consumed]:
    """The delivery events of `notifications` new notifications in topic order, each one's
    attempt and send `lag` events after its queueing, with partitions and offsets; with
    `callbacks`, each email and SMS's delivery receipt (provider.callbacks) `lag` later."""
    stamp = uuid.uuid4().hex[:8]
    start = datetime.now(UTC)
    placed: list[
        tuple[int, int, NotificationQueued | DeliveryAttempted | DeliverySent | ProviderCallback]
    ] = []
    order = itertools.count()
    for n in range(notifications):
        queued, attempted, sent = notification_events(stamp, n, start + timedelta(seconds=n))
        placed.append((3 * n, next(order), queued))
        placed.append((3 * n + lag, next(order), attempted))
        placed.append((3 * n + lag, next(order), sent))
        if callbacks and sent.channel is not Channel.PUSH:
            placed.append((3 * n + 2 * lag, next(order), delivered(sent)))
    placed.sort(key=lambda p: (p[0], p[1]))
    offsets: dict[tuple[str, int], int] = collections.defaultdict(int)
    out = []
    for _, _, record in placed:
        # keyed by incident, as the topic is: an incident's events stay in one partition
        partition = zlib.crc32(record.incident_id.encode()) % PARTITIONS
        topic = "provider.callbacks" if isinstance(record, ProviderCallback) else "delivery.events"
        out.append(Consumed(topic, partition, offsets[(topic, partition)], record))
        offsets[(topic, partition)] += 1
    return out


def batches(events: list[Consumed], size: int) -> list[tuple[list[Consumed], dict[Any, int]]]:
    """`events` cut into batches of `size`, each with the next offsets it stores."""
    out = []
    for start in range(0, len(events), size):
        batch = events[start : start + size]
        offsets = {(c.topic, c.partition): c.offset + 1 for c in batch}
        out.append((batch, offsets))
    return out


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the PostgreSQL backend `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


async def run_round(url: str, events: list[Consumed], size: int) -> Round:
    """Apply `events` in batches of `size`, as the runner does, timing both sides."""
    work = batches(events, size)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone() or (0,))[0]
        await conn.commit()
        # one warm-up batch, not counted: the connection's first statements plan and cache
        async with conn.transaction():
            await apply_batch(conn, [], {("delivery.events", 0): 0})
        wall, cpu, pg = time.monotonic(), time.process_time(), backend_cpu_s(pid)
        for batch, offsets in work:
            async with conn.transaction():
                await apply_batch(conn, batch, offsets)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        pg = backend_cpu_s(pid) - pg
    return Round(len(events), len(work), cpu, pg, wall)


@contextlib.contextmanager
def scratch_database(base: str) -> Iterator[str]:
    """A new migrated database on the server of `base`; dropped on exit."""
    name = f"projection_load_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def profiled(folder: Path | None) -> Iterator[None]:
    """py-spy sampling this process while the block runs, when `folder` is given."""
    if folder is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"projection-{int(time.time())}.speedscope.json"
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(os.getpid()), "--format", "speedscope", "-o", str(out)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)  # py-spy attaches before the work starts
    try:
        yield
    finally:
        proc.send_signal(2)
        proc.wait(60)
        print(f"profile: {out}")


async def measure(url: str, args: argparse.Namespace) -> dict[int, list[Round]]:
    """Every batch size's rounds, the sizes taking turns within each round."""
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    results: dict[int, list[Round]] = {s: [] for s in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            events = stream(args.notifications, args.lag, args.callbacks)
            results[size].append(await run_round(url, events, size))
    return results


def report(results: dict[int, list[Round]]) -> None:
    """The median round of each batch size, per event."""
    print(
        f"{'batch':>6} {'events':>7} {'worker us/ev':>13} {'(min)':>6} "
        f"{'postgres us/ev':>15} {'(min)':>6} {'ev/s':>8}"
    )
    for size, rounds in results.items():
        mid = sorted(rounds, key=lambda r: r.worker_s + r.postgres_s)[len(rounds) // 2]
        worker = statistics.median(r.worker_s / r.events for r in rounds) * 1e6
        postgres = statistics.median(r.postgres_s / r.events for r in rounds) * 1e6
        least_worker = min(r.worker_s / r.events for r in rounds) * 1e6
        least_postgres = min(r.postgres_s / r.events for r in rounds) * 1e6
        print(
            f"{size:>6} {mid.events:>7} {worker:>13.1f} {least_worker:>6.1f} "
            f"{postgres:>15.1f} {least_postgres:>6.1f} {mid.events / mid.wall_s:>8.0f}"
        )


def hot_updates(url: str) -> None:
    """How many of each table's updates were heap-only (touched no index)."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        for table, updates, hot in conn.execute(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname IN ('notification_log', 'notification_attempt') ORDER BY relname"
        ):
            print(f"{table}: {updates} updates, {hot} heap-only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="50,200,1000")
    parser.add_argument("--lag", type=int, default=300)
    parser.add_argument("--callbacks", action="store_true")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    base = args.database_url or database_url(Settings())
    with scratch_database(base) as url:
        with profiled(args.profile):
            results = asyncio.run(measure(url, args))
        report(results)
        hot_updates(url)


if __name__ == "__main__":
    main()
