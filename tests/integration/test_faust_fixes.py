"""Each faust-streaming fix of the worker (processors/kafka_transport.py,
processors/table_recovery.py) on a real broker: the defect shows on Faust's own classes
(`--stock`) and not on the worker's. A small Faust worker (faust_probe.py) is the subject.
Also the worker on a topic written in transactions: it reads read_committed, and the offsets
the markers and aborted records take are counted as done, not read again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from notifier.settings import Settings
from tests.integration.transactions import write_transactions

PROBE = Path(__file__).with_name("faust_probe.py")
REPO = PROBE.parents[2]


class Probe:
    """A running faust_probe.py worker and the JSON lines it has printed so far."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.out = log.with_suffix(".jsonl")
        self.out.touch()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(PROBE), *args, "--out", str(self.out)],
                stdout=err,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=log.parent,
            )

    @property
    def lines(self) -> list[dict[str, Any]]:
        text = self.out.read_text()
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    def seen(self) -> list[int]:
        return [line["seen"] for line in self.lines if "seen" in line]

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text()[-3000:]
                raise AssertionError(f"{what}: not within {timeout_s} s; {self.lines}\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def scenario(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., tuple[Probe, str, str]]]:
    """Start a probe on a fresh one-partition topic of its own: (probe, topic, group)."""
    bootstrap = settings.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    started: list[Probe] = []
    topics: list[str] = []

    def start(
        *extra: str, topic: str | None = None, group: str | None = None, messages: int = 0
    ) -> tuple[Probe, str, str]:
        if topic is None:
            topic = f"{settings.topic_prefix}probe-{uuid.uuid4().hex[:8]}"
            admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
            topics.append(topic)
            producer = Producer({"bootstrap.servers": bootstrap})
            for n in range(messages):
                producer.produce(topic, f"m{n}".encode(), partition=0)
            assert producer.flush(10) == 0
        group = group or f"{topic}-group"
        datadir = tmp_path / f"probe{len(started)}"
        datadir.mkdir()
        args = ["--bootstrap", bootstrap, "--group", group, "--topic", topic]
        probe = Probe([*args, "--datadir", str(datadir), *extra], tmp_path / f"{datadir.name}.log")
        started.append(probe)
        return probe, topic, group

    yield start
    for probe in started:
        probe.stop()
    if topics:
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            fut.result()


def committed(bootstrap: str, group: str, topic: str) -> int | None:
    """The group's committed offset of the topic's partition 0, read from the broker."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset if tp.offset >= 0 else None
    finally:
        consumer.close()


STOCK = pytest.param(True, id="faust-stock")
FIXED = pytest.param(False, id="fixed")


@pytest.mark.parametrize("stock", [STOCK, FIXED])
def test_dropped_records_are_read_again_not_committed_past(
    scenario: Callable[..., tuple[Probe, str, str]], settings: Settings, stock: bool
) -> None:
    """Records 4 and 5 are fetched and dropped once. Faust counts the jump as done and
    commits past them (faust #606, #378); fixed, they are read again before the commit."""
    flags = ["--drop", "4", "5", *(["--stock"] if stock else [])]
    probe, topic, group = scenario(*flags, messages=10)
    probe.wait_for("offset 9 handled", lambda: 9 in probe.seen())
    bootstrap = settings.kafka_bootstrap
    probe.wait_for("everything committed", lambda: committed(bootstrap, group, topic) == 10)
    if stock:
        assert {4, 5}.isdisjoint(probe.seen())  # committed past, never handled: lost
    else:
        assert set(probe.seen()) == set(range(10))


@pytest.mark.parametrize("stock", [STOCK, FIXED])
def test_records_dropped_at_the_end_of_a_partition_are_read_again(
    scenario: Callable[..., tuple[Probe, str, str]], settings: Settings, stock: bool
) -> None:
    """Records 8 and 9, the last written, are fetched and dropped once: no later record
    shows the hole, so neither Faust nor the gap rule sees it, and the partition stays
    behind with its agent idle (a drill stalled so). Fixed, the stall check (1 s here)
    reads them again from the committed offset."""
    flags = ["--drop", "8", "9", "--stall-after", "1", *(["--stock"] if stock else [])]
    probe, topic, group = scenario(*flags, messages=10)
    probe.wait_for("offset 7 handled", lambda: 7 in probe.seen())
    bootstrap = settings.kafka_bootstrap
    probe.wait_for("offsets to 7 committed", lambda: committed(bootstrap, group, topic) == 8)
    if stock:
        # nothing will happen, so nothing can be waited for: the time the fix takes, well
        # over (1 s to notice, a 0.5 s tick to read again, a second to handle)
        time.sleep(8)
        assert {8, 9}.isdisjoint(probe.seen())
        assert committed(bootstrap, group, topic) == 8
    else:
        probe.wait_for("offsets 8 and 9 handled", lambda: {8, 9} <= set(probe.seen()), 30)
        probe.wait_for("everything committed", lambda: committed(bootstrap, group, topic) == 10)


@pytest.mark.parametrize("stock", [STOCK, FIXED])
def test_a_fetch_while_no_partition_is_active_returns_nothing(
    scenario: Callable[..., tuple[Probe, str, str]], stock: bool
) -> None:
    """Faust's active partitions are emptied while a fetch waits; aiokafka reads the empty
    set as "all" and Faust drops what comes back (faust #629, #155). Fixed, the records
    wait in the fetcher and are handled once the partition is active again."""
    flags = ["--empty-active-partitions", *(["--stock"] if stock else [])]
    probe, _, _ = scenario(*flags, messages=1)
    # offset 6 is published after the partition is active again: once it is handled,
    # whatever was going to be handled of 1..5 has been
    probe.wait_for("offset 6 handled", lambda: 6 in probe.seen())
    if stock:
        assert not {1, 2, 3, 4, 5} <= set(probe.seen())  # some were fetched and dropped
    else:
        assert probe.seen() == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("stock", [STOCK, FIXED])
def test_a_revoke_commits_what_was_handled(
    scenario: Callable[..., tuple[Probe, str, str]], settings: Settings, stock: bool
) -> None:
    """A second worker joins: the first one's partition is revoked. Faust forgets what was
    acknowledged before its revoke handler commits (faust #502), so the partition's next
    owner handles it all again; fixed, the revoke commits it."""
    extra = ["--commit-interval", "600", *(["--stock"] if stock else [])]
    first, topic, group = scenario(*extra, messages=5)
    first.wait_for("5 handled", lambda: first.seen() == [0, 1, 2, 3, 4])
    second, _, _ = scenario(*extra, topic=topic, group=group)

    def calls(probe: Probe) -> list[str]:
        return [line["call"] for line in probe.lines if "call" in line]

    # the rebalance has completed when one of the two has resumed the partition again
    first.wait_for(
        "the partition resumed after the rebalance",
        lambda: calls(first).count("resume") >= 2 or "resume" in calls(second),
    )
    offset = committed(settings.kafka_bootstrap, group, topic)
    if stock:
        assert offset is None
    else:
        assert offset == 5


@pytest.mark.parametrize("stock", [STOCK, FIXED])
def test_recovery_seeks_the_streams_before_resuming_them(
    scenario: Callable[..., tuple[Probe, str, str]], stock: bool
) -> None:
    """Faust resumes the stream partitions, then seeks them to their committed offsets:
    what the agents handle in between is handled again after the seek. Fixed: seek first."""
    probe, _, _ = scenario(*(["--stock"] if stock else []), messages=1)
    probe.wait_for("offset 0 handled", lambda: probe.seen() == [0])
    calls = [line["call"] for line in probe.lines if "call" in line]
    first_resume = calls.index("resume")
    seeks_before = "seek" in calls[:first_resume]
    assert seeks_before is not stock, calls


TRANSACTIONS = [
    (True, [b"c0", b"c1", b"c2"]),
    (False, [b"a0", b"a1"]),  # a restarted dispatcher's unfinished transaction
    (True, [b"c3"]),
    (False, [b"a2"]),
    (True, [b"c4", b"c5"]),  # the partition ends with a commit marker
]


@pytest.mark.parametrize("stock", [STOCK, FIXED])
def test_a_transactional_topic_is_read_committed_to_its_end(
    scenario: Callable[..., tuple[Probe, str, str]], settings: Settings, stock: bool
) -> None:
    """Faust outside exactly_once reads read_uncommitted: it handles aborted records. Fixed,
    exactly the committed records are handled, once; the jumps over markers and aborted
    records count as done (nothing is read again), and the committed offset reaches the end
    of the partition, past its last marker."""
    probe, topic, group = scenario(*(["--stock"] if stock else []))
    bootstrap = settings.kafka_bootstrap
    wanted, end = write_transactions(bootstrap, topic, TRANSACTIONS)
    assert len(wanted) == 6 and end > wanted[-1] + 1  # the marker takes an offset
    if stock:
        probe.wait_for("aborted records handled", lambda: len(probe.seen()) >= 9)
        assert set(wanted) < set(probe.seen())
        return
    probe.wait_for("committed to the end", lambda: committed(bootstrap, group, topic) == end)
    assert probe.seen() == wanted, probe.log.read_text()[-4000:]  # why it read again
    assert "read again" not in probe.log.read_text()


def test_recovery_ends_on_a_changelog_ending_in_a_marker(
    scenario: Callable[..., tuple[Probe, str, str]], settings: Settings
) -> None:
    """The incident-memory changelog is written in the dispatcher's transactions. Faust's
    recovery waits for a record at the offset before the end, which a marker holds; fixed,
    recovery ends once the fetcher has passed over it, and the agents start."""
    bootstrap = settings.kafka_bootstrap
    topic = f"{settings.topic_prefix}probe-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    changelog = f"{group}-{topic}-probe-changelog"  # faust_probe.py's table
    admin = AdminClient({"bootstrap.servers": bootstrap})
    compacted = {"cleanup.policy": "compact"}
    for fut in admin.create_topics(
        [NewTopic(topic, 1, 1), NewTopic(changelog, 1, 1, config=compacted)]
    ).values():
        fut.result()
    try:
        write_transactions(
            bootstrap, changelog, [(True, [b"1", b"2"]), (False, [b"3"]), (True, [b"4"])]
        )
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(topic, b"m0", partition=0)
        assert producer.flush(10) == 0
        probe, _, _ = scenario(topic=topic, group=group)
        probe.wait_for("recovered, offset 0 handled", lambda: probe.seen() == [0], 45)
    finally:
        for fut in admin.delete_topics([topic, changelog], operation_timeout=30).values():
            fut.result()


def test_a_restarted_worker_goes_on_past_markers_and_aborted_records(
    scenario: Callable[..., tuple[Probe, str, str]], settings: Settings
) -> None:
    """A worker stops at the end of a transactional topic; an aborted transaction follows
    (its dispatcher restarted) and a committed one. The next worker of the group starts at
    the committed offset, skips the aborted records without reading anything again, handles
    the new committed records once and commits to the new end."""
    bootstrap = settings.kafka_bootstrap
    first, topic, group = scenario()
    _, end = write_transactions(bootstrap, topic, TRANSACTIONS)
    first.wait_for("committed to the end", lambda: committed(bootstrap, group, topic) == end)
    first.stop()
    later = [(False, [b"a3", b"a4"]), (True, [b"c6"]), (False, [b"a5"])]
    wanted, new_end = write_transactions(bootstrap, topic, later)
    second, _, _ = scenario(topic=topic, group=group)
    second.wait_for(
        "committed to the new end", lambda: committed(bootstrap, group, topic) == new_end
    )
    assert second.seen() == [o for o in wanted if o >= end]
    assert "read again" not in first.log.read_text() + second.log.read_text()
