"""ChannelSender with fake providers and a recording emitter: ordering, outcomes, breaker,
failover from one provider to the next."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY

from adapters.base import ProviderError
from notifier.contracts.codec import AvroCodec
from notifier.contracts.records import (
    Channel,
    DeliveryAttempted,
    DeliveryCancelled,
    DeliveryFailed,
    DeliverySent,
    FailureCategory,
    NotificationKind,
    Priority,
    ReceiptDue,
    Record,
    SendCommand,
)
from notifier.contracts.registry import LocalSchemaRegistry
from notifier.domain.failures import Failure, FailureKind
from notifier.settings import Settings
from processors.channels import ChannelSender
from processors.finished_commands import FinishedCommands
from tests.samples import sample


class RecordingEmitter:
    """Stands in for the Kafka emitter: keeps what would have been sent."""

    def __init__(self) -> None:
        self.codec = AvroCodec(LocalSchemaRegistry())
        self.sent: list[Record] = []
        self.topics: list[tuple[str, Record]] = []
        self.dead: list[str] = []
        self.acknowledged = asyncio.Event()  # the broker answers sends that wait for it
        self.acknowledged.set()
        self.waiting = asyncio.Event()  # a send waits for the broker

    async def send(self, topic: str, key: str, record: Record) -> None:
        self.sent.append(record)
        self.topics.append((topic, record))

    async def send_many(self, items: Any) -> None:
        for topic, key, record in items:
            await self.send(topic, key, record)

    async def send_and_wait(self, topic: str, key: str, record: Record) -> None:
        self.waiting.set()
        await self.acknowledged.wait()
        await self.send(topic, key, record)

    async def dead_letter(self, event: Any, stage: str, error: BaseException) -> None:
        self.dead.append(str(error))


class FakeProvider:
    channel = Channel.EMAIL

    def __init__(self, failures: Sequence[ProviderError | None] = (), name: str = "fake") -> None:
        self.name = name
        self.failures = list(failures)
        self.calls: list[str] = []

    async def send(self, command: SendCommand) -> str:
        self.calls.append(command.incident_id)
        await asyncio.sleep(0)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return f"msg-{command.incident_id}"

    async def close(self) -> None:
        pass


@dataclass
class FakeEvent:
    value: bytes


def sender(provider: FakeProvider, **settings: Any) -> tuple[ChannelSender, RecordingEmitter]:
    emitter = RecordingEmitter()
    settings.setdefault("rate_limit_per_min", 600_000)
    channel = ChannelSender(Channel.EMAIL, [provider], Settings(**settings), emitter)  # type: ignore[arg-type]
    return channel, emitter


def command(incident: str, priority: Priority = Priority.LOW, attempt: int = 1) -> SendCommand:
    return sample(
        SendCommand,
        incident_id=incident,
        notification_id=f"n-{incident}",
        command_id=f"c-{incident}-{attempt}",
        channel=Channel.EMAIL,
        priority=priority,
        attempt=attempt,
        kind=NotificationKind.ALERT,
        bundled={},
        requested_by=None,
    )


async def test_critical_commands_of_a_batch_go_first() -> None:
    provider = FakeProvider()
    channel, emitter = sender(provider, channel_concurrency=1)
    batch = [command(f"low-{i}") for i in range(5)] + [command("crit", Priority.CRITICAL)]
    await channel.handle([FakeEvent(emitter.codec.encode(c)) for c in batch])
    assert provider.calls[0] == "crit"
    attempted = [e.incident_id for e in emitter.sent if isinstance(e, DeliveryAttempted)]
    assert attempted[0] == "crit" and len(attempted) == 6
    assert sum(isinstance(e, DeliverySent) for e in emitter.sent) == 6


async def test_failures_carry_category_and_final() -> None:
    transient = ProviderError(Failure(FailureKind.HTTP, 503), "fake: HTTP 503")
    permanent = ProviderError(Failure(FailureKind.HTTP, 400), "fake: HTTP 400")
    provider = FakeProvider([transient, permanent, transient])
    channel, emitter = sender(provider, channel_concurrency=1, retry_delays_s=(1, 2))
    batch = [command("a", attempt=1), command("b", attempt=1), command("c", attempt=3)]
    await channel.handle([FakeEvent(emitter.codec.encode(c)) for c in batch])
    failed = {e.incident_id: e for e in emitter.sent if isinstance(e, DeliveryFailed)}
    assert failed["a"].category is FailureCategory.TRANSIENT and not failed["a"].final
    assert failed["b"].category is FailureCategory.PERMANENT and failed["b"].final
    assert failed["c"].final  # the last of 3 attempts (2 delays + 1)
    assert failed["a"].status_code == 503
    retries = [e for e in emitter.sent if isinstance(e, SendCommand)]
    assert [(r.incident_id, r.attempt) for r in retries] == [("a", 2)]  # only "a" is retried
    assert retries[0].not_before is not None


class SilentProvider(FakeProvider):
    """Takes the request and never answers; records whether its wait was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = asyncio.Event()

    async def send(self, command: SendCommand) -> str:
        self.calls.append(command.incident_id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


async def test_a_provider_that_never_answers_times_out_and_is_retried() -> None:
    provider = SilentProvider()
    channel, emitter = sender(provider, send_timeout_s=0.05, retry_delays_s=(1, 2))
    await channel.handle([FakeEvent(emitter.codec.encode(command("quiet")))])
    failed = [e for e in emitter.sent if isinstance(e, DeliveryFailed)]
    assert len(failed) == 1
    assert failed[0].category is FailureCategory.TRANSIENT and not failed[0].final
    assert "no answer in 0.05 s" in failed[0].error
    assert provider.cancelled.is_set()  # the request itself was given up, not left running
    assert [(r.incident_id, r.attempt) for r in emitter.sent if isinstance(r, SendCommand)] == [
        ("quiet", 2)
    ]


class GatedProvider(FakeProvider):
    """Holds each request until let go; records how many were in flight at most."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most = 0
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()

    async def send(self, command: SendCommand) -> str:
        self.calls.append(command.incident_id)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.arrived.set()
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        return f"msg-{command.incident_id}"


async def gated_batch(
    concurrency: int, size: int
) -> tuple[GatedProvider, ChannelSender, RecordingEmitter, list[SendCommand], asyncio.Future[None]]:
    """A channel handling `size` commands through a provider that holds every request, once
    every request that can start has started."""
    provider = GatedProvider()
    channel, emitter = sender(provider, channel_concurrency=concurrency)
    batch = [command(f"i{n:02}") for n in range(size)]
    handled = asyncio.ensure_future(
        channel.handle([FakeEvent(emitter.codec.encode(c)) for c in batch])
    )
    await provider.arrived.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    return provider, channel, emitter, batch, handled


async def test_a_batch_keeps_to_the_channels_concurrency_without_queueing_on_it() -> None:
    before = len(asyncio.all_tasks())
    provider, _, emitter, batch, handled = await gated_batch(concurrency=3, size=20)
    assert provider.in_flight == 3
    # the rest of the batch waits in the batch, not as 17 more tasks on the semaphore
    assert len(asyncio.all_tasks()) - before == 1 + 3  # the batch and its requests
    provider.gate.set()
    await handled
    assert provider.most == 3
    assert provider.calls == [c.incident_id for c in batch]
    assert sum(isinstance(e, DeliverySent) for e in emitter.sent) == 20


async def test_a_cancelled_batch_gives_its_slots_back() -> None:
    provider, channel, emitter, _, handled = await gated_batch(concurrency=2, size=5)
    handled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handled
    for _ in range(5):
        await asyncio.sleep(0)  # the cancelled requests end
    assert provider.in_flight == 0
    # both slots are free again: the next batch is not held back
    provider.gate.set()
    next_batch = channel.handle([FakeEvent(emitter.codec.encode(command("next")))])
    await asyncio.wait_for(next_batch, 5)  # a slot kept by a cancelled request: no answer
    assert provider.calls[-1] == "next"


async def test_alerts_of_acknowledged_incidents_are_cancelled_not_sent() -> None:
    provider = FakeProvider()
    emitter = RecordingEmitter()
    status = {"acked": "acknowledged", "done": "resolved"}
    channel = ChannelSender(
        Channel.EMAIL,
        [provider],
        Settings(rate_limit_per_min=600_000),
        emitter,  # type: ignore[arg-type]
        lambda incident: status.get(incident, "open"),
    )
    batch = [command("acked"), command("done"), command("open")]
    await channel.handle([FakeEvent(emitter.codec.encode(c)) for c in batch])
    assert provider.calls == ["open"]
    cancelled = {e.incident_id: e.reason for e in emitter.sent if isinstance(e, DeliveryCancelled)}
    assert cancelled == {"acked": "incident acknowledged", "done": "incident resolved"}


async def test_the_circuit_opens_after_consecutive_provider_failures() -> None:
    down = [ProviderError(Failure(FailureKind.CONNECTION), "fake: refused") for _ in range(3)]
    provider = FakeProvider(down)
    channel, emitter = sender(provider, channel_concurrency=1, breaker_failures=3)
    batch = [command(f"i{i}") for i in range(5)]
    await channel.handle([FakeEvent(emitter.codec.encode(c)) for c in batch])
    assert len(provider.calls) == 3  # the last two were not sent: the circuit was open
    assert REGISTRY.get_sample_value("notifier_circuit_open", {"breaker": "email:fake"}) == 1
    assert (
        REGISTRY.get_sample_value(
            "notifier_circuit_transitions_total", {"breaker": "email:fake", "to_state": "open"}
        )
        or 0
    ) >= 1
    reasons = [e.error for e in emitter.sent if isinstance(e, DeliveryFailed)]
    assert sum("circuit open" in r for r in reasons) == 2


async def test_bad_recipients_do_not_open_the_circuit() -> None:
    bad = [ProviderError(Failure(FailureKind.HTTP, 400, "21211"), "bad number") for _ in range(5)]
    provider = FakeProvider(bad)
    channel, emitter = sender(provider, channel_concurrency=1, breaker_failures=2)
    await channel.handle([FakeEvent(emitter.codec.encode(command(f"i{i}"))) for i in range(5)])
    assert len(provider.calls) == 5


async def test_undecodable_and_misrouted_commands_are_dead_lettered() -> None:
    provider = FakeProvider()
    channel, emitter = sender(provider)
    sms = sample(SendCommand, channel=Channel.SMS)
    await channel.handle(
        [
            FakeEvent(b"junk"),
            FakeEvent(emitter.codec.encode(sms)),
            FakeEvent(emitter.codec.encode(command("ok"))),
        ]
    )
    assert len(emitter.dead) == 2 and "command for SMS on the email topic" in emitter.dead[1]
    assert provider.calls == ["ok"]


async def test_a_bundled_message_records_its_outcome_for_every_notification_it_carries() -> None:
    provider = FakeProvider()
    channel, emitter = sender(provider)
    bundle = replace(command("inc-1"), bundled={"n-2": "inc-2", "n-3": "inc-3"})
    await channel.handle([FakeEvent(emitter.codec.encode(bundle))])
    assert len(provider.calls) == 1  # one message
    sent = {(e.notification_id, e.incident_id) for e in emitter.sent if isinstance(e, DeliverySent)}
    attempted = {e.notification_id for e in emitter.sent if isinstance(e, DeliveryAttempted)}
    assert sent == {(bundle.notification_id, "inc-1"), ("n-2", "inc-2"), ("n-3", "inc-3")}
    assert attempted == {bundle.notification_id, "n-2", "n-3"}


async def test_an_operators_resend_goes_out_even_for_an_acknowledged_incident() -> None:
    provider = FakeProvider()
    emitter = RecordingEmitter()
    channel = ChannelSender(
        Channel.EMAIL,
        [provider],
        Settings(),
        emitter,  # type: ignore[arg-type]
        incident_status=lambda incident_id: "acknowledged",
    )
    resend = replace(command("inc-r", attempt=2), requested_by="ops")
    await channel.handle([FakeEvent(emitter.codec.encode(resend))])
    assert provider.calls == ["inc-r"]
    attempted = [e for e in emitter.sent if isinstance(e, DeliveryAttempted)]
    assert [(a.attempt, a.requested_by) for a in attempted] == [(2, "ops")]


# --- failover: two providers of one channel ---------------------------------------------


def down(status: int = 503) -> ProviderError:
    return ProviderError(Failure(FailureKind.HTTP, status), f"HTTP {status}")


def two(
    first: Sequence[ProviderError | None] = (),
    second: Sequence[ProviderError | None] = (),
    **settings: Any,
) -> tuple[ChannelSender, RecordingEmitter, FakeProvider, FakeProvider]:
    a, b = FakeProvider(first, name="smtp"), FakeProvider(second, name="sendgrid")
    emitter = RecordingEmitter()
    settings.setdefault("rate_limit_per_min", 600_000)
    settings.setdefault("retry_delays_s", (1, 2))
    channel = ChannelSender(Channel.EMAIL, [a, b], Settings(**settings), emitter)  # type: ignore[arg-type]
    return channel, emitter, a, b


async def run(channel: ChannelSender, emitter: RecordingEmitter, *commands: SendCommand) -> None:
    await channel.handle([FakeEvent(emitter.codec.encode(c)) for c in commands])


def retries(emitter: RecordingEmitter) -> list[tuple[str, SendCommand]]:
    return [(t, r) for t, r in emitter.topics if isinstance(r, SendCommand)]


def outcomes(emitter: RecordingEmitter) -> list[tuple[str, str, int, bool | None]]:
    """(event, provider, attempt, final) of every attempt and outcome."""
    return [
        (type(e).__name__, e.provider or "", e.attempt, getattr(e, "final", None))
        for e in emitter.sent
        if isinstance(e, DeliveryAttempted | DeliverySent | DeliveryFailed)
    ]


async def test_a_transient_failure_fails_over_to_the_next_provider_after_its_step() -> None:
    channel, emitter, smtp, sendgrid = two([down(503)])
    before = datetime.now(UTC)
    await run(channel, emitter, command("inc"))
    assert outcomes(emitter) == [
        ("DeliveryAttempted", "smtp", 1, None),
        ("DeliveryFailed", "smtp", 1, False),
    ]
    [(topic, again)] = retries(emitter)
    assert topic == "notify.retry.1s" and again.provider == "sendgrid" and again.attempt == 2
    assert again.not_before is not None and again.not_before > before + timedelta(seconds=0.7)
    assert sendgrid.calls == []
    # the retry comes back from the delay topic: it goes out through SendGrid
    emitter.sent.clear()
    await run(channel, emitter, again)
    assert outcomes(emitter) == [
        ("DeliveryAttempted", "sendgrid", 2, None),
        ("DeliverySent", "sendgrid", 2, None),
    ]
    assert (smtp.calls, sendgrid.calls) == (["inc"], ["inc"])


async def test_a_configuration_error_fails_over_at_once() -> None:
    channel, emitter, _, _ = two([down(401)])
    before = datetime.now(UTC)
    await run(channel, emitter, command("inc"))
    failed = [e for e in emitter.sent if isinstance(e, DeliveryFailed)]
    assert failed[0].category is FailureCategory.CONFIGURATION and not failed[0].final
    [(topic, again)] = retries(emitter)
    assert topic == "notify.email" and again.provider == "sendgrid"  # not through a delay
    assert again.not_before is not None and again.not_before - before < timedelta(seconds=1)


async def test_an_open_circuit_fails_over_at_once_and_new_sends_skip_it() -> None:
    refused = [ProviderError(Failure(FailureKind.CONNECTION), "refused") for _ in range(2)]
    channel, emitter, smtp, sendgrid = two(refused, channel_concurrency=1, breaker_failures=2)
    await run(channel, emitter, command("i0"), command("i1"))  # the circuit opens
    assert REGISTRY.get_sample_value("notifier_circuit_open", {"breaker": "email:smtp"}) == 1
    assert REGISTRY.get_sample_value("notifier_circuit_open", {"breaker": "email:sendgrid"}) in (
        None,
        0,
    )
    emitter.sent.clear()
    emitter.topics.clear()
    # a retry that names SMTP is refused without a call, and goes to SendGrid at once
    named = replace(command("i0", attempt=2), provider="smtp")
    await run(channel, emitter, named)
    assert len(smtp.calls) == 2
    failed = [e for e in emitter.sent if isinstance(e, DeliveryFailed)]
    assert "circuit open" in failed[0].error and failed[0].provider == "smtp"
    [(topic, again)] = retries(emitter)
    assert (topic, again.provider, again.attempt) == ("notify.email", "sendgrid", 3)
    # a new notification goes straight to SendGrid while SMTP's circuit is open
    emitter.sent.clear()
    await run(channel, emitter, command("i2"))
    assert outcomes(emitter) == [
        ("DeliveryAttempted", "sendgrid", 1, None),
        ("DeliverySent", "sendgrid", 1, None),
    ]
    assert len(smtp.calls) == 2 and sendgrid.calls == ["i2"]


async def test_a_failure_is_recorded_only_once_its_retry_is_in_kafka() -> None:
    # a recorded failure makes a copy of the command a finished one: recorded without its
    # retry, the notification would stop there
    channel, emitter = sender(FakeProvider([down(503)]), retry_delays_s=(1, 2))
    emitter.acknowledged.clear()
    handling = asyncio.create_task(run(channel, emitter, command("inc")))
    await asyncio.wait_for(emitter.waiting.wait(), timeout=5)
    assert any(isinstance(e, DeliveryAttempted) for e in emitter.sent)
    assert not any(isinstance(e, DeliveryFailed | SendCommand) for e in emitter.sent)
    emitter.acknowledged.set()
    await handling
    kinds = [type(e) for e in emitter.sent if isinstance(e, DeliveryFailed | SendCommand)]
    assert kinds == [SendCommand, DeliveryFailed]


async def test_when_every_provider_failed_the_schedule_decides() -> None:
    channel, emitter, _, _ = two([], [down(503), down(503), down(401)])
    later = replace(command("inc", attempt=2), provider="sendgrid")
    await run(channel, emitter, later)
    [(topic, again)] = retries(emitter)  # attempts left: the first provider after the step
    assert topic == "notify.retry.2s" and again.provider is None and again.attempt == 3
    emitter.topics.clear()
    await run(channel, emitter, replace(command("last", attempt=3), provider="sendgrid"))
    assert retries(emitter) == []  # the schedule is spent: final
    await run(channel, emitter, replace(command("conf", attempt=1), provider="sendgrid"))
    assert retries(emitter) == []  # a configuration error on the last provider: final
    finals = {e.incident_id: e.final for e in emitter.sent if isinstance(e, DeliveryFailed)}
    assert finals == {"inc": False, "last": True, "conf": True}


async def test_the_last_attempt_of_the_schedule_still_fails_over() -> None:
    channel, emitter, _, _ = two([down(503)])
    await run(channel, emitter, command("inc", attempt=3))  # no step after attempt 3 of (1, 2)
    failed = [e for e in emitter.sent if isinstance(e, DeliveryFailed)]
    assert not failed[0].final
    [(topic, again)] = retries(emitter)
    assert (topic, again.provider, again.attempt) == ("notify.email", "sendgrid", 4)


async def test_a_bad_recipient_is_final_on_the_first_provider() -> None:
    channel, emitter, _, sendgrid = two([down(400)])
    await run(channel, emitter, command("inc"))
    failed = [e for e in emitter.sent if isinstance(e, DeliveryFailed)]
    assert failed[0].category is FailureCategory.PERMANENT and failed[0].final
    assert retries(emitter) == [] and sendgrid.calls == []


async def test_the_receipt_deadline_names_the_provider_that_sent() -> None:
    channel, emitter, smtp, sendgrid = two(callback_base_url="http://bridge")
    smtp.receipts = False  # type: ignore[attr-defined]
    sendgrid.receipts = True  # type: ignore[attr-defined]
    critical = replace(command("inc", Priority.CRITICAL), provider="sendgrid")
    await run(channel, emitter, critical, replace(command("other", Priority.CRITICAL)))
    due = [e for e in emitter.sent if isinstance(e, ReceiptDue)]
    assert [(d.incident_id, d.provider) for d in due] == [("inc", "sendgrid")]


async def test_a_provider_the_channel_lacks_takes_the_first() -> None:
    channel, emitter, smtp, _ = two()
    await run(channel, emitter, replace(command("inc"), provider="mailgun"))
    assert smtp.calls == ["inc"]
    assert {e.provider for e in emitter.sent if isinstance(e, DeliverySent)} == {"smtp"}


@pytest.mark.parametrize(
    ("closed", "sent_for", "cancelled"),
    [
        (set(), {"lead", "n-2", "n-3"}, set()),
        ({"inc-1"}, {"n-2", "n-3"}, {"lead"}),  # the lead's incident closed: the rest still go
        ({"inc-2"}, {"lead", "n-3"}, {"n-2"}),
        ({"inc-1", "inc-2", "inc-3"}, set(), {"lead", "n-2", "n-3"}),
    ],
    ids=["all-open", "lead-closed", "one-carried-closed", "all-closed"],
)
async def test_a_bundle_is_sent_for_its_open_incidents_and_cancelled_for_the_others(
    closed: set[str], sent_for: set[str], cancelled: set[str]
) -> None:
    provider = FakeProvider()
    emitter = RecordingEmitter()
    channel = ChannelSender(
        Channel.EMAIL,
        [provider],
        Settings(rate_limit_per_min=600_000),
        emitter,  # type: ignore[arg-type]
        incident_status=lambda incident: "acknowledged" if incident in closed else "open",
    )
    bundle = replace(
        command("inc-1"), notification_id="lead", bundled={"n-2": "inc-2", "n-3": "inc-3"}
    )
    await channel.handle([FakeEvent(emitter.codec.encode(bundle))])
    assert len(provider.calls) == (1 if sent_for else 0)
    got_sent = {e.notification_id for e in emitter.sent if isinstance(e, DeliverySent)}
    got_cancelled = {
        (e.notification_id, e.incident_id) for e in emitter.sent if isinstance(e, DeliveryCancelled)
    }
    owner = {"lead": "inc-1", "n-2": "inc-2", "n-3": "inc-3"}
    assert got_sent == sent_for
    assert got_cancelled == {(n, owner[n]) for n in cancelled}


async def test_each_priority_retries_on_its_own_schedule() -> None:
    transient = ProviderError(Failure(FailureKind.HTTP, 503), "fake: HTTP 503")
    provider = FakeProvider([transient] * 3)
    channel, emitter = sender(
        provider,
        channel_concurrency=1,
        retry_delays_s=(30, 60),
        retry_schedules={"CRITICAL": (5, 10, 20), "LOW": ()},
    )
    batch = [
        command("crit", Priority.CRITICAL, attempt=3),  # third of four: one step left (20 s)
        command("high", Priority.HIGH, attempt=1),  # the default schedule: 30 s first
        command("low", Priority.LOW, attempt=1),  # LOW is never retried
    ]
    await channel.handle([FakeEvent(emitter.codec.encode(c)) for c in batch])
    failed = {e.incident_id: e.final for e in emitter.sent if isinstance(e, DeliveryFailed)}
    assert failed == {"crit": False, "high": False, "low": True}
    retried = {r.incident_id: t for t, r in emitter.topics if isinstance(r, SendCommand)}
    assert retried == {"crit": "notify.retry.20s", "high": "notify.retry.30s"}


async def test_a_copy_of_a_finished_command_is_not_sent_again() -> None:
    provider = FakeProvider()
    channel, emitter = sender(provider)
    first, retry = command("inc-1"), command("inc-1", attempt=2)
    events = [FakeEvent(emitter.codec.encode(c)) for c in (first, first)]
    await channel.handle(events)  # a copy in the same batch
    await channel.handle(events[:1])  # a copy read later
    await channel.handle([FakeEvent(emitter.codec.encode(retry))])  # the next attempt is new
    assert provider.calls == ["inc-1", "inc-1"]
    assert [e.attempt for e in emitter.sent if isinstance(e, DeliveryAttempted)] == [1, 2]


async def test_a_command_whose_outcome_kafka_refused_is_sent_again() -> None:
    provider = FakeProvider()
    channel, emitter = sender(provider)
    refused = {"once": True}
    send = emitter.send_many

    async def send_many(items: Any) -> None:
        items = list(items)
        if refused["once"] and any(isinstance(r, DeliverySent) for _, _, r in items):
            refused["once"] = False
            raise KafkaTimeoutError()
        await send(items)

    emitter.send_many = send_many  # type: ignore[method-assign]
    event = FakeEvent(emitter.codec.encode(command("inc-1")))
    with pytest.raises(KafkaTimeoutError):
        await channel.handle([event])
    await channel.handle([event])  # as the batch is handled again: not finished, so sent
    assert provider.calls == ["inc-1", "inc-1"]
    assert sum(isinstance(e, DeliverySent) for e in emitter.sent) == 1


def test_finished_commands_forget_the_oldest_past_their_size() -> None:
    finished = FinishedCommands(size=2)
    for command_id in ("a", "b", "c"):
        finished.add(command_id)
    assert ("a" in finished, "b" in finished, "c" in finished, len(finished)) == (
        False,
        True,
        True,
        2,
    )


async def test_a_bundle_led_by_a_finished_command_is_sent() -> None:
    # the notification went out alone, and later leads a bundle carrying others: a new
    # message (skipping it would lose what it carries); a copy of that bundle is skipped
    provider = FakeProvider()
    channel, emitter = sender(provider)
    alone = command("inc-1")
    bundle = dataclasses.replace(alone, bundled={"n-inc-2": "inc-2"})
    for sent in (alone, bundle, bundle):
        await channel.handle([FakeEvent(emitter.codec.encode(sent))])
    assert provider.calls == ["inc-1", "inc-1"]


@pytest.mark.parametrize(
    ("recorded", "bundled", "is_copy"),
    [
        ({"n-inc-1#1"}, {}, True),
        (set(), {}, False),
        ({"n-inc-1#2"}, {}, False),  # another attempt's outcome
        ({"n-inc-1#1"}, {"n-inc-2": "inc-2"}, False),  # carries one not sent
        ({"n-inc-1#1", "n-inc-2#1"}, {"n-inc-2": "inc-2"}, True),
    ],
)
def test_a_command_is_a_copy_when_every_notification_it_carries_has_its_outcome(
    recorded: set[str], bundled: dict[str, str], is_copy: bool
) -> None:
    finished = FinishedCommands()
    finished.add_all(recorded)
    assert finished.finished(dataclasses.replace(command("inc-1"), bundled=bundled)) is is_copy


async def test_a_copy_whose_outcome_another_worker_recorded_is_not_sent() -> None:
    provider = FakeProvider()
    channel, emitter = sender(provider)
    copy = command("inc-1")
    channel.finished.add_all(["n-inc-1#1"])  # as read from delivery.events after an assignment
    await channel.handle([FakeEvent(emitter.codec.encode(copy))])
    assert provider.calls == []
