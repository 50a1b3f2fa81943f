"""The dead-letter topic for operators: read and filter it, preview what failed, replay it.

A replay puts each selected message's original key, value and headers back on its source
topic (the real name the worker read it from), with one more header,
`notifier-replayed-from: deadletter@<partition>:<offset>`, naming the dead letter it came
from. What was replayed is kept in PostgreSQL (`deadletter_replay`, migration 0005), keyed by
where the original message was first read (source topic, partition, offset), so that:

- a second replay of the same selection, after any restart, skips what was put back, and a
  message dead-lettered twice (a redelivery after a rebalance) is put back once;
- a replayed copy that fails again is a new message at a new offset: its own dead letter can
  be replayed after the next fix;
- the ledger row is inserted, the message produced and acknowledged (all in-sync replicas),
  and only then the row committed: a failed publish leaves no row (replay it again later),
  two replays running at once wait on the row and put the message back once. A crash between
  Kafka's acknowledgement and the commit would replay that one message again (at least once
  rather than at most once: a page sent twice beats a page lost).

Finding earlier replays by their header instead would need a full read of every source
topic on every replay. `notifier projection rebuild` drops only the read model's tables, so
the ledger survives it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from rich.table import Table

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.records import DeadLetter
from notifier.kafka_io import producer_config
from notifier.logs import mask
from notifier.settings import Settings
from notifier.topics import full_name

log = logging.getLogger("notifier.deadletters")

TOPIC = "deadletter"
REPLAYED_FROM = "notifier-replayed-from"
PREVIEW_CHARS = 160
HEX_BYTES = 16
LIST_HEADERS = ("time (UTC)", "source", "stage", "reason", "preview", "replayed")

Original = tuple[str, int, int]
"""Where a message was first read: (real source topic, partition, offset)."""


class DeadLetterReadError(RuntimeError):
    """The dead-letter topic cannot be read (missing topic, Kafka not answering)."""


class LedgerMissingError(RuntimeError):
    """PostgreSQL has no deadletter_replay table: the migrations were not applied."""


@dataclass(frozen=True)
class DeadLetterEntry:
    """One record of the dead-letter topic and where it sits in that topic."""

    partition: int
    offset: int
    record: DeadLetter

    @property
    def address(self) -> str:
        """The dead letter's own place, as the replay header spells it."""
        return f"{TOPIC}@{self.partition}:{self.offset}"

    @property
    def original(self) -> Original:
        """Where the failed message was read: what the replay ledger is keyed by."""
        r = self.record
        return (r.source_topic, r.source_partition, r.source_offset)

    @property
    def source(self) -> str:
        """`topic[partition]@offset` of the failed message."""
        r = self.record
        return f"{r.source_topic}[{r.source_partition}]@{r.source_offset}"


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on; unset filters match everything."""

    reason: str | None = None
    since: datetime | None = None
    topics: frozenset[str] | None = None

    def matches(self, entry: DeadLetterEntry) -> bool:
        """Whether `entry` passes every filter set."""
        r = entry.record
        if self.reason is not None:
            needle = self.reason.lower()
            if not any(needle in text.lower() for text in (r.reason, r.error_type, r.stage)):
                return False
        if self.since is not None and r.occurred_at < self.since:
            return False
        return self.topics is None or r.source_topic in self.topics


def parse_since(text: str) -> datetime:
    """An ISO 8601 time with its zone (`Z` allowed); ValueError without one."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise ValueError("--since needs a time zone, e.g. 2026-11-25T03:00:00+00:00")
    return when


def selection(
    settings: Settings, reason: str | None, since: str | None, topic: str | None
) -> Selection:
    """The filters of the command's flags; `topic` is a logical name (the real one works too)."""
    return Selection(
        reason=reason or None,
        since=parse_since(since) if since else None,
        topics=frozenset({full_name(settings, topic), topic}) if topic else None,
    )


def read_dead_letters(
    settings: Settings, codec: AvroCodec, idle_s: float = 30.0
) -> Iterator[DeadLetterEntry]:
    """Every dead letter in the topic now (up to the end offsets at the start), decoded."""
    from confluent_kafka import Consumer, TopicPartition

    name = full_name(settings, TOPIC)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"notifier-deadletters-{time.time_ns()}",
            "enable.auto.commit": False,
            # the dead-letter topic is written in the dispatcher's transactions too: an
            # aborted one's letters were never sent (librdkafka's default, relied on)
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
            "logger": logging.getLogger("notifier.kafka.consumer"),
        }
    )
    try:
        left = _bounds(consumer, name, idle_s)
        consumer.assign([TopicPartition(name, p, low) for p, (low, _) in left.items()])
        ends = {p: high for p, (_, high) in left.items()}
        deadline = time.monotonic() + idle_s
        while ends:
            messages = consumer.consume(500, timeout=1.0)
            if not messages:
                _drop_finished(consumer, name, ends)
                if ends and time.monotonic() > deadline:
                    raise DeadLetterReadError(
                        f"{name}: no message for {idle_s:.0f} s with {len(ends)} "
                        f"partition(s) not read to their end"
                    )
                continue
            deadline = time.monotonic() + idle_s
            for msg in messages:
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                if msg.error() is not None or offset >= ends.get(partition, -1):
                    continue
                if offset + 1 >= ends[partition]:
                    del ends[partition]
                entry = _entry(codec, partition, offset, msg.value())
                if entry is not None:
                    yield entry
    finally:
        consumer.close()


def _bounds(consumer: Any, name: str, timeout_s: float) -> dict[int, tuple[int, int]]:
    """(low, high) watermarks of every partition of `name` that holds something."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        topic = consumer.list_topics(name, timeout=timeout_s).topics.get(name)
        if topic is None or topic.error is not None:
            why = topic.error if topic is not None else "not found"
            raise DeadLetterReadError(f"topic {name}: {why} (run `notifier topics create`)")
        bounds = {
            p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)
            for p in topic.partitions
        }
    except KafkaException as exc:
        raise DeadLetterReadError(f"topic {name}: {exc}") from exc
    return {p: (low, high) for p, (low, high) in bounds.items() if high > low}


def _drop_finished(consumer: Any, name: str, ends: dict[int, int]) -> None:
    """Forget partitions whose position reached their end (gaps left nothing to read)."""
    from confluent_kafka import TopicPartition

    for tp in consumer.position([TopicPartition(name, p) for p in ends]):
        if tp.offset >= 0 and tp.offset >= ends[tp.partition]:
            del ends[tp.partition]


def _entry(
    codec: AvroCodec, partition: int, offset: int, value: bytes | None
) -> DeadLetterEntry | None:
    """The dead letter in `value`, or None (logged) when it is not one."""
    try:
        record = codec.decode(value)
    except ContractError as exc:
        log.warning("%s@%s:%s is not readable: %s", TOPIC, partition, offset, exc.reason)
        return None
    if not isinstance(record, DeadLetter):
        log.warning("%s@%s:%s is a %s", TOPIC, partition, offset, type(record).__name__)
        return None
    return DeadLetterEntry(partition, offset, record)


def select(entries: Iterable[DeadLetterEntry], chosen: Selection) -> list[DeadLetterEntry]:
    """The entries that match, oldest first."""
    found = [e for e in entries if chosen.matches(e)]
    return sorted(found, key=lambda e: (e.record.occurred_at, e.partition, e.offset))


def preview(codec: AvroCodec, value: bytes | None, limit: int | None = PREVIEW_CHARS) -> str:
    """The original value decoded, contacts masked; else why not and its first bytes in hex."""
    if value is None:
        return "(no value)"
    try:
        name, body = codec.decode_dict(value)
        text = f"{name.split('.')[-1]} {json.dumps(body, default=_plain, ensure_ascii=False)}"
    except ContractError as exc:
        more = "…" if len(value) > HEX_BYTES else ""
        text = f"undecodable, {len(value)} bytes: {value[:HEX_BYTES].hex(' ')}{more} ({exc.reason})"
    text = mask(text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any) -> str:
    """JSON for what Avro decodes to and JSON does not know."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def list_row(
    entry: DeadLetterEntry, codec: AvroCodec, replayed_at: datetime | None = None
) -> tuple[str, ...]:
    """The cells `deadletter list` shows: time, source, stage, reason, preview, replayed."""
    r = entry.record
    return (
        _when(r.occurred_at),
        entry.source,
        r.stage,
        mask(r.reason if r.error_type == "ContractError" else f"{r.error_type}: {r.reason}"),
        preview(codec, r.value),
        _when(replayed_at) if replayed_at else "",
    )


def list_table(rows: Iterable[tuple[str, ...]], width: int) -> Table:
    """The rows of `list_row` as a table `width` columns wide, one line per dead letter (the
    reason and the preview are cut to fit; `notifier tail deadletter` shows everything)."""
    rows = list(rows)
    table = Table(*LIST_HEADERS)
    longest = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(LIST_HEADERS)]
    left = width - sum(longest[i] for i in (0, 1, 2, 5)) - 3 * len(LIST_HEADERS) - 1
    reason = max(10, min(longest[3], left * 2 // 5))
    widths = [*longest[:3], reason, max(10, left - reason), longest[5]]
    for column, column_width in zip(table.columns, widths, strict=True):
        column.width, column.no_wrap, column.overflow = column_width, True, "ellipsis"
    for row in rows:
        table.add_row(*row)
    return table


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def key_text(entry: DeadLetterEntry) -> str:
    """The original key as text, masked (keys are incident or user ids, seldom contacts)."""
    key = entry.record.key
    return "(none)" if key is None else mask(key.decode(errors="replace"))


def describe(entry: DeadLetterEntry) -> str:
    """One line for an operator: the dead letter, where it goes back, its key and why."""
    r = entry.record
    why = mask(r.reason)
    why = why if len(why) <= 80 else why[:79] + "…"
    return f"{entry.address} -> {r.source_topic} (key {key_text(entry)}; {r.stage}: {why})"


def replay_headers(entry: DeadLetterEntry) -> list[tuple[str, bytes]]:
    """The original headers, and `notifier-replayed-from` naming this dead letter."""
    kept = [(k, v) for k, v in sorted(entry.record.headers.items()) if k != REPLAYED_FROM]
    return [*kept, (REPLAYED_FROM, entry.address.encode())]


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay of a selection will do before it starts."""

    todo: list[DeadLetterEntry]
    already: list[DeadLetterEntry]
    duplicates: list[DeadLetterEntry] = field(default_factory=list)


def plan(entries: Iterable[DeadLetterEntry], replayed: Mapping[Original, datetime]) -> ReplayPlan:
    """Split a selection: to replay, replayed before (the ledger), and second dead letters of
    a message already in the selection."""
    todo: list[DeadLetterEntry] = []
    already: list[DeadLetterEntry] = []
    duplicates: list[DeadLetterEntry] = []
    seen: set[Original] = set()
    for entry in entries:
        if entry.original in replayed:
            already.append(entry)
        elif entry.original in seen:
            duplicates.append(entry)
        else:
            seen.add(entry.original)
            todo.append(entry)
    return ReplayPlan(todo, already, duplicates)


class ReplayLedger:
    """The deadletter_replay table: which original messages were put back, and when."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @classmethod
    def connect(cls, url: str) -> ReplayLedger:
        """Open the ledger; LedgerMissingError when the migration was not applied."""
        conn = psycopg.connect(url, autocommit=True)
        found = conn.execute("SELECT to_regclass('deadletter_replay')").fetchone()
        if found is None or found[0] is None:
            conn.close()
            raise LedgerMissingError(
                "PostgreSQL has no deadletter_replay table: run `notifier db migrate`"
            )
        return cls(conn)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def replayed(self, entries: Iterable[DeadLetterEntry]) -> dict[Original, datetime]:
        """When each of these entries' original messages was replayed, if it was."""
        keys = sorted({e.original for e in entries})
        if not keys:
            return {}
        rows = self._conn.execute(
            """SELECT r.source_topic, r.source_partition, r.source_offset, r.replayed_at
                 FROM deadletter_replay r
                 JOIN unnest(%s::text[], %s::int[], %s::bigint[]) AS k(topic, part, off)
                   ON r.source_topic = k.topic AND r.source_partition = k.part
                  AND r.source_offset = k.off""",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        ).fetchall()
        return {(t, p, o): at for t, p, o, at in rows}

    @contextmanager
    def claim(self, entry: DeadLetterEntry) -> Iterator[bool]:
        """Record `entry`'s original as replayed, committed only if the block succeeds; yields
        False when it was replayed before (or by a replay running now)."""
        with self._conn.transaction():
            row = self._conn.execute(
                """INSERT INTO deadletter_replay (source_topic, source_partition, source_offset,
                       deadletter_topic, deadletter_partition, deadletter_offset,
                       deadletter_event_id)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT DO NOTHING RETURNING replayed_at""",
                (*entry.original, TOPIC, entry.partition, entry.offset, entry.record.event_id),
            ).fetchone()
            yield row is not None


class ReplayPublishError(RuntimeError):
    """Kafka did not acknowledge a replayed message."""


class RawSender:
    """Produces original bytes to real topic names, keyed as the notifier's producers key."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        from confluent_kafka import Producer

        self.timeout_s = timeout_s
        self._errors: list[str] = []
        self._producer = Producer(producer_config(settings))

    def send(self, entry: DeadLetterEntry) -> None:
        """Put `entry`'s original message back on its source topic and wait for the ack."""
        r = entry.record
        headers: list[tuple[str, str | bytes | None]] = [*replay_headers(entry)]
        self._producer.produce(
            r.source_topic,
            key=r.key,
            value=r.value,
            headers=headers,
            on_delivery=self._delivered,
        )
        left = self._producer.flush(self.timeout_s)
        if left:
            raise ReplayPublishError(f"not acknowledged within {self.timeout_s:.0f} s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise ReplayPublishError("; ".join(errors))

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")


@dataclass
class ReplayResult:
    """What a replay did: put back, skipped (replayed meanwhile), failed with why."""

    replayed: int = 0
    skipped: int = 0
    failed: list[tuple[DeadLetterEntry, str]] = field(default_factory=list)


def replay(
    entries: Iterable[DeadLetterEntry],
    ledger: ReplayLedger,
    sender: RawSender,
    step: Callable[[DeadLetterEntry], None] | None = None,
) -> ReplayResult:
    """Replay each entry once: claim it in the ledger, publish, then commit the claim."""
    result = ReplayResult()
    for entry in entries:
        try:
            with ledger.claim(entry) as claimed:
                if claimed:
                    sender.send(entry)
                    result.replayed += 1
                else:
                    result.skipped += 1
        except ReplayPublishError as exc:  # the claim was rolled back: replayable later
            result.failed.append((entry, str(exc)))
        if step is not None:
            step(entry)
    return result
