"""A copy of a command whose outcome is already recorded is not sent again, also by a
restarted worker that never saw the original: after an assignment the channel agent reads the
outcomes recorded in its partition of delivery.events (processors/recorded_results.py)."""

from __future__ import annotations

import itertools
import signal

import pytest
from aiokafka.partitioner import murmur2

from notifier.contracts.records import DeliverySent, SendCommand
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration


def on_partition_of(key: str, partitions: int) -> str:
    """A new incident id whose records share `key`'s partition (murmur2, as every producer)."""

    def partition(k: str) -> int:
        return int((murmur2(k.encode()) & 0x7FFFFFFF) % partitions)

    return next(
        f"{key}-{n}" for n in itertools.count() if partition(f"{key}-{n}") == partition(key)
    )


async def test_a_restarted_worker_does_not_send_a_copy_of_a_recorded_command(
    clean_sandbox: Pipeline,
) -> None:
    p = clean_sandbox
    sent = p.incident("mailer", title="recorded once")
    found = await p.events(
        "notify.email", sent.incident_id, lambda cs: any(isinstance(c, SendCommand) for c in cs)
    )
    original = next(c for c in found if isinstance(c, SendCommand))
    await p.events(
        "delivery.events",
        sent.incident_id,
        lambda es: any(isinstance(e, DeliverySent) for e in es),
    )

    p.worker.send_signal(signal.SIGKILL)
    p.worker.wait(10)
    # a copy lands while no worker runs (as a forwarder's redo after a crash would): the
    # restarted worker's first batch of the partition holds it
    p.publish("notify.email", original.incident_id, original)
    p.start_worker()

    # a marker on the same partition, published after the copy: once it is sent, the copy
    # has been read and decided on
    marker = p.incident(
        "mailer",
        title="after the copy",
        incident_id=on_partition_of(original.incident_id, p.settings.topic_partitions),
    )
    await eventually(
        p.requests,
        lambda rs: any(r.get("incident_id") == marker.incident_id for r in rs),
        timeout_s=90,
    )
    requests = await p.requests()
    assert [r for r in requests if r.get("notification_id") == original.notification_id] != []
    assert sum(r.get("notification_id") == original.notification_id for r in requests) == 1, (
        "the copy was sent again"
    )
