"""The operating metrics move where the work happens: a channel's sends, the dispatcher's
queued notifications, the projection's committed batches."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from adapters.base import ProviderError
from notifier.contracts.records import (
    Channel,
    DeliverySent,
    NotificationKind,
    NotificationQueued,
    Tier,
)
from notifier.domain.dispatch import Dispatch
from notifier.domain.failures import Failure, FailureKind
from processors.dispatcher import log_dispatch
from processors.metrics import projected
from tests.samples import sample
from tests.unit.processors.test_channel_sender import FakeEvent, FakeProvider, command, sender


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_send_observes_incident_latency_limiter_wait_and_retry_step() -> None:
    before = {
        "latency": value("notifier_incident_to_request_seconds_count", channel="EMAIL"),
        "latency_sum": value("notifier_incident_to_request_seconds_sum", channel="EMAIL"),
        "wait": value("notifier_rate_limit_wait_seconds_count", channel="EMAIL", provider="m1"),
        "retry": value("notifier_retries_scheduled_total", channel="EMAIL", step="notify.retry.7s"),
    }
    transient = ProviderError(Failure(FailureKind.HTTP, 503), "m1: HTTP 503")
    channel, emitter = sender(FakeProvider([None, transient], name="m1"), retry_delays_s=(7, 9))
    ten_s_ago = datetime.now(UTC) - timedelta(seconds=10)
    commands = [replace(command(f"m-{i}"), incident_at=ten_s_ago) for i in range(2)]
    await channel.handle([FakeEvent(emitter.codec.encode(c)) for c in commands])
    assert value("notifier_incident_to_request_seconds_count", channel="EMAIL") == (
        before["latency"] + 2
    )
    waited = value("notifier_incident_to_request_seconds_sum", channel="EMAIL")
    assert waited - before["latency_sum"] >= 20  # two requests of a 10 s old incident
    assert value("notifier_rate_limit_wait_seconds_count", channel="EMAIL", provider="m1") == (
        before["wait"] + 2
    )
    assert value("notifier_retries_scheduled_total", channel="EMAIL", step="notify.retry.7s") == (
        before["retry"] + 1
    )


def test_queued_notifications_are_counted_by_channel_and_kind() -> None:
    labels = {"channel": "SLACK", "kind": "RESOLVED_NOTICE"}
    before = value("notifier_notifications_queued_total", **labels)
    queued = sample(
        NotificationQueued,
        channel=Channel.SLACK,
        kind=NotificationKind.RESOLVED_NOTICE,
        tier=Tier.PRIMARY,
    )
    log_dispatch(queued, Dispatch(events=[queued, queued, sample(DeliverySent)]))
    assert value("notifier_notifications_queued_total", **labels) == before + 2


def test_projected_events_observe_their_age_at_commit() -> None:
    before = value("notifier_projection_event_to_row_seconds_count")
    old = sample(DeliverySent, occurred_at=datetime.now(UTC) - timedelta(seconds=3))
    bucket = {"le": "1.0"}
    under_1s = value("notifier_projection_event_to_row_seconds_bucket", **bucket)
    projected([old])
    assert value("notifier_projection_event_to_row_seconds_count") == before + 1
    assert value("notifier_projection_event_to_row_seconds_bucket", **bucket) == under_1s
