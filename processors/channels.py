"""Sending one channel's commands: bounded concurrency, a rate limit and a circuit breaker
per provider, a timeout per request, an outcome event for every attempt, and failover from
one provider of the channel to the next."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiolimiter import AsyncLimiter
from circuitbreaker import STATE_CLOSED, STATE_OPEN, CircuitBreaker, CircuitBreakerError

from adapters.base import Provider, ProviderError
from notifier.contracts.errors import ContractError
from notifier.contracts.records import (
    Channel,
    DeliveryAttempted,
    DeliveryCancelled,
    DeliveryFailed,
    DeliverySent,
    FailureCategory,
    NotificationKind,
    ReceiptDue,
    Record,
    SendCommand,
)
from notifier.domain import ids
from notifier.domain.backoff import next_attempt, retry_step
from notifier.domain.dispatch import PRIORITY_RANK
from notifier.domain.failover import AfterFailure, Wait, after_failure, choose
from notifier.domain.failures import Failure, FailureKind
from notifier.settings import Settings
from notifier.topics import channel_topic, retry_topic
from processors.emitter import Emitter
from processors.finished_commands import FinishedCommands, finished_keys
from processors.metrics import (
    CIRCUIT_OPEN,
    CIRCUIT_TRANSITIONS,
    DUPLICATE_COMMANDS,
    RATE_LIMIT_WAIT,
    RETRIES_SCHEDULED,
    SENDS,
    labelled,
    request_starting,
)

log = logging.getLogger("notifier.channel")


def _counts_against_provider(exc_type: type[BaseException], exc: BaseException) -> bool:
    """Only failures of the provider open its circuit, not a bad recipient."""
    return isinstance(exc, ProviderError) and exc.category is FailureCategory.TRANSIENT


def delivery_fields(command: SendCommand, step: str) -> dict[str, Any]:
    """The fields every delivery event of `command` shares, with a deterministic event id."""
    return {
        "event_id": ids.event_id(command.command_id, step),
        "occurred_at": datetime.now(UTC),
        "notification_id": command.notification_id,
        "incident_id": command.incident_id,
        "user_id": command.user_id,
        "channel": command.channel,
        "attempt": command.attempt,
    }


def bundled_outcomes(command: SendCommand, outcome: Any) -> list[tuple[str, str, Record]]:
    """The attempt and outcome of a bundled message, recorded for every notification it
    carries (a throttle held them back and bundled them): each row shows how it went out."""
    out: list[tuple[str, str, Record]] = []
    attempted = DeliveryAttempted(
        **delivery_fields(command, "attempted"), provider=outcome.provider
    )
    for notification, incident in sorted(command.bundled.items()):
        for event in (attempted, outcome):
            copy = dataclasses.replace(
                event,
                event_id=ids.event_id(event.event_id, notification),
                notification_id=notification,
                incident_id=incident,
            )
            out.append(("delivery.events", incident, copy))
    return out


def _once(action: Callable[[], None]) -> Callable[..., None]:
    """`action`, done on the first call only (whatever it is called with)."""
    done = False

    def call(*_: object) -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return call


def per_second_limiter(per_minute: int) -> AsyncLimiter:
    """A limiter of `per_minute` that refills every second, so a minute's allowance is not
    spent in one burst (below 60/min: one send every 60/rate seconds)."""
    if per_minute >= 60:
        return AsyncLimiter(per_minute / 60, 1)
    return AsyncLimiter(1, 60 / per_minute)


@dataclass
class Route:
    """One provider of a channel, with its own rate limit and circuit breaker."""

    provider: Provider
    limiter: AsyncLimiter
    breaker: CircuitBreaker
    send: Callable[[Route, SendCommand], Awaitable[str]]  # refused while the circuit is open

    @property
    def name(self) -> str:
        """The provider's name: the label of its metrics and logs."""
        return self.provider.name


class ChannelSender:
    """Delivers batches of one channel's commands through its providers, failing over from
    one to the next in their configured order (docs/FAILOVER.md)."""

    def __init__(
        self,
        channel: Channel,
        providers: Sequence[Provider],
        settings: Settings,
        emitter: Emitter,
        incident_status: Callable[[str], str] = lambda incident_id: "open",
        rng: random.Random | None = None,
    ) -> None:
        if not providers:
            raise ValueError(f"{channel.value} has no provider")
        self.channel = channel
        self.settings = settings
        self.emitter = emitter
        self.incident_status = incident_status
        self.rng = rng or random.Random()
        self.finished = FinishedCommands()
        self.slots = asyncio.Semaphore(settings.channel_concurrency)
        self.routes: dict[str, Route] = {}
        for provider in providers:
            breaker = CircuitBreaker(
                failure_threshold=settings.breaker_failures,
                recovery_timeout=settings.breaker_cooldown_s,
                expected_exception=_counts_against_provider,
                name=f"{channel.value.lower()}:{provider.name}",
            )
            self.routes[provider.name] = Route(
                provider,
                per_second_limiter(settings.rate_limit(provider.name)),
                breaker,
                # the decorated call is the one that refuses while open (call_async alone
                # does not)
                breaker(self._send),
            )
        self.order = tuple(self.routes)  # provider names in failover order

    def route(self, command: SendCommand) -> Route:
        """The provider `command` goes to: the one it names, else the first whose circuit
        is not open."""
        open_now = {n for n, r in self.routes.items() if r.breaker.state == STATE_OPEN}
        return self.routes[choose(self.order, command.provider, open_now)]

    def decode(self, value: bytes | None) -> SendCommand:
        """The command in a message; ContractError when it is not one for this channel."""
        command = self.emitter.codec.decode(value)
        if not isinstance(command, SendCommand):
            raise ContractError(f"{type(command).__name__} is not a SendCommand")
        if command.channel is not self.channel:
            raise ContractError(
                f"command for {command.channel.value} on the {self.channel.value.lower()} topic"
            )
        return command

    async def handle(self, events: list[Any]) -> None:
        """One batch: decode (dead-letter what cannot be), CRITICAL first, send concurrently."""
        commands: list[SendCommand] = []
        for event in events:
            try:
                commands.append(self.decode(event.value))
            except ContractError as exc:
                await self.emitter.dead_letter(event, "decode", exc)
        commands = self._not_finished(commands)
        if not commands:
            return
        commands = await self._drop_cancelled(commands)
        if not commands:
            return
        commands.sort(key=lambda c: PRIORITY_RANK[c.priority])
        # each command's provider is chosen once: the attempt recorded is the one made
        routed = [(c, self.route(c)) for c in commands]
        await self.emitter.send_many(
            (
                "delivery.events",
                c.incident_id,
                DeliveryAttempted(
                    **delivery_fields(c, "attempted"),
                    provider=route.name,
                    requested_by=c.requested_by,
                ),
            )
            for c, route in routed
        )
        await self._deliver_all(routed)

    async def _deliver_all(self, routed: list[tuple[SendCommand, Route]]) -> None:
        """Deliver each command, at most `channel_concurrency` requests in flight, in order.
        A command's task is made once a slot is free: a batch of 200 all waiting on the
        semaphore cost 2.5% of the worker's CPU under make bench (each acquire scans every
        waiter, Python 3.11)."""
        tasks: list[asyncio.Future[None]] = []
        try:
            for command, route in routed:
                await self.slots.acquire()
                release = _once(self.slots.release)
                delivery = asyncio.ensure_future(self._deliver(command, route, release))
                # a task cancelled before it ran never reaches its own release
                delivery.add_done_callback(release)
                tasks.append(delivery)
        except BaseException:
            for pending in tasks:
                pending.cancel()
            raise
        await asyncio.gather(*tasks)

    def _not_finished(self, commands: list[SendCommand]) -> list[SendCommand]:
        """`commands` less copies: of one whose outcome is recorded, or earlier in the batch."""
        fresh: dict[str, SendCommand] = {}
        for command in commands:
            key = ",".join(finished_keys(command))
            if key in fresh or self.finished.finished(command):
                DUPLICATE_COMMANDS.labels(self.channel.value).inc()
                log.info(
                    "copy of a finished command not sent again",
                    extra={
                        "incident_id": command.incident_id,
                        "notification_id": command.notification_id,
                    },
                )
                continue
            fresh[key] = command
        return list(fresh.values())

    async def _drop_cancelled(self, commands: list[SendCommand]) -> list[SendCommand]:
        """Alerts of acknowledged or resolved incidents are not sent: DeliveryCancelled. A
        bundle is sent for its notifications whose incidents are still open, each closed one
        cancelled on its own."""
        keep: list[SendCommand] = []
        dropped: list[tuple[str, str, Record]] = []
        for command in commands:
            # an operator's resend goes out whatever the incident's state: they asked for it
            if command.kind is not NotificationKind.ALERT or command.requested_by:
                keep.append(command)
                continue
            members = {command.notification_id: command.incident_id, **command.bundled}
            status = {n: self.incident_status(i) for n, i in members.items()}
            cancelled = delivery_fields(command, "cancelled")
            for notification, incident in members.items():
                if status[notification] == "open":
                    continue
                event_id = cancelled["event_id"]
                if notification != command.notification_id:
                    event_id = ids.event_id(event_id, notification)
                fields = {
                    **cancelled,
                    "event_id": event_id,
                    "notification_id": notification,
                    "incident_id": incident,
                }
                reason = f"incident {status[notification]}"
                dropped.append(
                    ("delivery.events", incident, DeliveryCancelled(**fields, reason=reason))
                )
            still_open = [(n, i) for n, i in members.items() if status[n] == "open"]
            if not still_open:
                continue
            if len(still_open) < len(members):
                lead, incident = still_open[0]
                command = dataclasses.replace(
                    command,
                    command_id=ids.command_id(lead, command.attempt),
                    notification_id=lead,
                    incident_id=incident,
                    bundled=dict(still_open[1:]),
                )
            keep.append(command)
        if dropped:
            await self.emitter.send_many(dropped)
        return keep

    async def _deliver(
        self, command: SendCommand, route: Route, release: Callable[..., None]
    ) -> None:
        try:
            outcome, after = await self._attempt(command, route)
        finally:
            release()  # the slot is the request's: what follows is Kafka's
        if isinstance(outcome, DeliveryFailed) and after is not None and not after.final:
            # the retry is in Kafka before the failure is queued: a copy of this command
            # whose outcome is recorded is not sent again (recorded_results.py), so a failure
            # recorded without its retry would stop the notification there. Queued first is
            # not written first: the two go to different partitions, maybe brokers.
            await self.emitter.send_and_wait(*self.next_attempt(command, outcome, after))
        if isinstance(outcome, DeliverySent) and self.needs_receipt(command, route.provider):
            # the deadline is in Kafka before the send is recorded, as retries are
            await self.emitter.send_and_wait(
                "receipt.deadlines", command.incident_id, self.receipt_due(command, outcome)
            )
        await self.emitter.send_many(
            [("delivery.events", command.incident_id, outcome), *bundled_outcomes(command, outcome)]
        )
        # only now: a Kafka error above sends it again
        self.finished.add_all(finished_keys(command))

    def next_attempt(
        self, command: SendCommand, failed: DeliveryFailed, after: AfterFailure
    ) -> tuple[str, str, SendCommand]:
        """(topic, key, command) of the attempt that follows a non-final failure: in the
        delay topic of its backoff step, or straight on the channel's topic when it goes to
        the next provider at once."""
        now = datetime.now(UTC)
        if after.wait is Wait.BACKOFF:
            # a Retry-After speaks for the provider that sent it, not for the next one
            retry_after = None if after.failover else (failed.retry_after_ms or 0) / 1000 or None
            delays = self.settings.retry_delays(command.priority.value)
            retry = next_attempt(command, delays, now, self.rng, retry_after)
            if retry is None:  # after_failure waits a step only when the schedule has one
                raise RuntimeError(f"no backoff step after attempt {command.attempt}")
            step, again = retry
            RETRIES_SCHEDULED.labels(self.channel.value, retry_topic(step)).inc()
            return retry_topic(step), command.incident_id, replace(again, provider=after.provider)
        attempt = command.attempt + 1
        again = replace(
            command,
            attempt=attempt,
            command_id=ids.command_id(command.notification_id, attempt),
            not_before=now,
            provider=after.provider,
        )
        return channel_topic(self.channel), command.incident_id, again

    def needs_receipt(self, command: SendCommand, provider: Provider) -> bool:
        """Alerts of the configured priorities, through a provider that reports delivery to
        a deployed bridge, must be confirmed delivered in time."""
        return (
            command.kind is NotificationKind.ALERT
            and command.priority.value in self.settings.receipt_priorities
            and getattr(provider, "receipts", False)
            and bool(self.settings.callback_base_url)
        )

    def receipt_due(self, command: SendCommand, sent: DeliverySent) -> ReceiptDue:
        """The deadline of a sent alert's delivery receipt, from the provider that sent it."""
        return ReceiptDue(
            event_id=ids.event_id(command.command_id, "receipt-due"),
            occurred_at=sent.occurred_at,
            due_at=sent.occurred_at + timedelta(seconds=self.settings.receipt_deadline_s),
            notification_id=command.notification_id,
            incident_id=command.incident_id,
            user_id=command.user_id,
            channel=command.channel,
            provider=sent.provider,
        )

    async def _attempt(
        self, command: SendCommand, route: Route
    ) -> tuple[Record, AfterFailure | None]:
        """One send through `route`: its outcome event, and what follows it if it failed."""
        name = route.name
        extra = {
            "incident_id": command.incident_id,
            "notification_id": command.notification_id,
            "channel": command.channel.value,
            "attempt": command.attempt,
            "provider": name,
        }
        before = route.breaker.state
        started = time.monotonic()
        circuit_open = False
        try:
            await route.limiter.acquire()
            labelled(RATE_LIMIT_WAIT, self.channel.value, name).observe(time.monotonic() - started)
            message_id = await route.send(route, command)
        except CircuitBreakerError:
            circuit_open = True
            error = ProviderError(
                Failure(FailureKind.CIRCUIT_OPEN), f"{name}: circuit open, not called"
            )
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # an adapter bug must not stop the channel
            log.exception("adapter %s raised", name, extra=extra)
            error = ProviderError(Failure(FailureKind.CONNECTION), f"{type(exc).__name__}: {exc}")
        else:
            self._log_breaker(route, before)
            labelled(SENDS, self.channel.value, name, "sent").inc()
            latency = int((time.monotonic() - started) * 1000)
            log.info("sent", extra={**extra, "latency_ms": latency})
            sent = DeliverySent(
                **delivery_fields(command, "sent"),
                provider=name,
                provider_message_id=message_id,
                latency_ms=latency,
            )
            return sent, None
        self._log_breaker(route, before)
        category = error.category
        labelled(SENDS, self.channel.value, name, category.value.lower()).inc()
        delays = self.settings.retry_delays(command.priority.value)
        attempts_left = retry_step(command.attempt, delays) is not None
        after = after_failure(self.order, name, category, circuit_open, attempts_left)
        log.warning(
            "send failed: %s",
            error.reason,
            extra={
                **extra,
                "category": category.value,
                "final": after.final,
                "next_provider": after.provider if after.failover else None,
            },
        )
        failed = DeliveryFailed(
            **delivery_fields(command, "failed"),
            category=category,
            error=error.reason,
            final=after.final,
            provider=name,
            status_code=error.failure.status,
            retry_after_ms=int(error.retry_after_s * 1000) if error.retry_after_s else None,
            # a refused connection fails in ms, a timeout after the whole timeout: the log
            # shows which (no provider was called when the circuit was open)
            latency_ms=None if circuit_open else int((time.monotonic() - started) * 1000),
        )
        return failed, after

    async def _send(self, route: Route, command: SendCommand) -> str:
        provider = route.provider
        request_starting(self.channel.value, command.incident_at)
        timeout = self.settings.send_timeout(self.channel.value)
        try:
            # a timeout scope on this task: wait_for made a task per request (Python 3.11)
            async with asyncio.timeout(timeout):
                return await provider.send(command)
        except TimeoutError as exc:
            raise ProviderError(
                Failure(FailureKind.TIMEOUT), f"{provider.name}: no answer in {timeout:g} s"
            ) from exc

    def _log_breaker(self, route: Route, before: str) -> None:
        breaker = route.breaker
        after = breaker.state
        labelled(CIRCUIT_OPEN, breaker.name).set(1 if after == STATE_OPEN else 0)
        if after != before:
            CIRCUIT_TRANSITIONS.labels(breaker.name, after).inc()
            level = logging.INFO if after == STATE_CLOSED else logging.WARNING
            log.log(
                level,
                "circuit %s: %s -> %s",
                breaker.name,
                before,
                after,
                extra={"breaker": breaker.name, "state": after},
            )
