"""Sending one channel's commands: bounded concurrency, a rate limit and a circuit breaker
per provider, a timeout per request, and an outcome event for every attempt."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable
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
from notifier.domain.failures import Failure, FailureKind
from notifier.settings import Settings
from notifier.topics import retry_topic
from processors.emitter import Emitter
from processors.metrics import CIRCUIT_OPEN, CIRCUIT_TRANSITIONS, SENDS

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


def per_second_limiter(per_minute: int) -> AsyncLimiter:
    """A limiter of `per_minute` that refills every second, so a minute's allowance is not
    spent in one burst (below 60/min: one send every 60/rate seconds)."""
    if per_minute >= 60:
        return AsyncLimiter(per_minute / 60, 1)
    return AsyncLimiter(1, 60 / per_minute)


class ChannelSender:
    """Delivers batches of one channel's commands through its provider."""

    def __init__(
        self,
        channel: Channel,
        provider: Provider,
        settings: Settings,
        emitter: Emitter,
        incident_status: Callable[[str], str] = lambda incident_id: "open",
        rng: random.Random | None = None,
    ) -> None:
        self.channel = channel
        self.provider = provider
        self.settings = settings
        self.emitter = emitter
        self.incident_status = incident_status
        self.rng = rng or random.Random()
        self.slots = asyncio.Semaphore(settings.channel_concurrency)
        self.limiter = per_second_limiter(settings.rate_limit(provider.name))
        self.breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failures,
            recovery_timeout=settings.breaker_cooldown_s,
            expected_exception=_counts_against_provider,
            name=f"{channel.value.lower()}:{provider.name}",
        )
        # the decorated call is the one that refuses while open (call_async alone does not)
        self._guarded_send = self.breaker(self._send)

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
        if not commands:
            return
        commands = await self._drop_cancelled(commands)
        if not commands:
            return
        commands.sort(key=lambda c: PRIORITY_RANK[c.priority])
        await self.emitter.send_many(
            (
                "delivery.events",
                c.incident_id,
                DeliveryAttempted(
                    **delivery_fields(c, "attempted"),
                    provider=self.provider.name,
                    requested_by=c.requested_by,
                ),
            )
            for c in commands
        )
        await asyncio.gather(*(self._deliver(c) for c in commands))

    async def _drop_cancelled(self, commands: list[SendCommand]) -> list[SendCommand]:
        """Alerts of acknowledged or resolved incidents are not sent: DeliveryCancelled."""
        keep: list[SendCommand] = []
        dropped: list[tuple[str, str, Record]] = []
        for command in commands:
            status = self.incident_status(command.incident_id)
            # an operator's resend goes out whatever the incident's state: they asked for it
            if (
                command.kind is NotificationKind.ALERT
                and status != "open"
                and not command.requested_by
            ):
                dropped.append(
                    (
                        "delivery.events",
                        command.incident_id,
                        DeliveryCancelled(
                            **delivery_fields(command, "cancelled"),
                            reason=f"incident {status}",
                        ),
                    )
                )
            else:
                keep.append(command)
        if dropped:
            await self.emitter.send_many(dropped)
        return keep

    async def _deliver(self, command: SendCommand) -> None:
        async with self.slots:
            outcome = await self._attempt(command)
        retry = None
        if isinstance(outcome, DeliveryFailed) and not outcome.final:
            retry = next_attempt(
                command,
                self.settings.retry_delays_s,
                datetime.now(UTC),
                self.rng,
                (outcome.retry_after_ms or 0) / 1000 or None,
            )
        if retry is not None:
            step, again = retry
            # the retry is queued before the failure is recorded: never a non-final failure
            # without its next attempt (both follow retry_step, so one exists for it)
            await self.emitter.send(retry_topic(step), command.incident_id, again)
        if isinstance(outcome, DeliverySent) and self.needs_receipt(command):
            # the deadline is queued before the send is recorded, as retries are
            await self.emitter.send(
                "receipt.deadlines", command.incident_id, self.receipt_due(command, outcome)
            )
        await self.emitter.send_many(
            [("delivery.events", command.incident_id, outcome), *bundled_outcomes(command, outcome)]
        )

    def needs_receipt(self, command: SendCommand) -> bool:
        """Alerts of the configured priorities, through a provider that reports delivery to
        a deployed bridge, must be confirmed delivered in time."""
        return (
            command.kind is NotificationKind.ALERT
            and command.priority.value in self.settings.receipt_priorities
            and getattr(self.provider, "receipts", False)
            and bool(self.settings.callback_base_url)
        )

    def receipt_due(self, command: SendCommand, sent: DeliverySent) -> ReceiptDue:
        """The deadline of a sent alert's delivery receipt."""
        return ReceiptDue(
            event_id=ids.event_id(command.command_id, "receipt-due"),
            occurred_at=sent.occurred_at,
            due_at=sent.occurred_at + timedelta(seconds=self.settings.receipt_deadline_s),
            notification_id=command.notification_id,
            incident_id=command.incident_id,
            user_id=command.user_id,
            channel=command.channel,
            provider=self.provider.name,
        )

    async def _attempt(self, command: SendCommand) -> Record:
        extra = {
            "incident_id": command.incident_id,
            "notification_id": command.notification_id,
            "channel": command.channel.value,
            "attempt": command.attempt,
        }
        before = self.breaker.state
        started = time.monotonic()
        try:
            await self.limiter.acquire()
            message_id = await self._guarded_send(command)
        except CircuitBreakerError:
            error = ProviderError(
                Failure(FailureKind.CIRCUIT_OPEN), f"{self.provider.name}: circuit open, not called"
            )
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # an adapter bug must not stop the channel
            log.exception("adapter %s raised", self.provider.name, extra=extra)
            error = ProviderError(Failure(FailureKind.CONNECTION), f"{type(exc).__name__}: {exc}")
        else:
            self._log_breaker(before)
            SENDS.labels(self.channel.value, self.provider.name, "sent").inc()
            latency = int((time.monotonic() - started) * 1000)
            log.info("sent", extra={**extra, "provider": self.provider.name, "latency_ms": latency})
            return DeliverySent(
                **delivery_fields(command, "sent"),
                provider=self.provider.name,
                provider_message_id=message_id,
                latency_ms=latency,
            )
        self._log_breaker(before)
        category = error.category
        SENDS.labels(self.channel.value, self.provider.name, category.value.lower()).inc()
        final = (
            category is not FailureCategory.TRANSIENT
            or retry_step(command.attempt, self.settings.retry_delays_s) is None
        )
        log.warning(
            "send failed: %s",
            error.reason,
            extra={**extra, "category": category.value, "final": final},
        )
        return DeliveryFailed(
            **delivery_fields(command, "failed"),
            category=category,
            error=error.reason,
            final=final,
            provider=self.provider.name,
            status_code=error.failure.status,
            retry_after_ms=int(error.retry_after_s * 1000) if error.retry_after_s else None,
        )

    async def _send(self, command: SendCommand) -> str:
        try:
            return await asyncio.wait_for(self.provider.send(command), self.settings.send_timeout_s)
        except TimeoutError as exc:
            raise ProviderError(
                Failure(FailureKind.TIMEOUT),
                f"{self.provider.name}: no answer in {self.settings.send_timeout_s:g} s",
            ) from exc

    def _log_breaker(self, before: str) -> None:
        after = self.breaker.state
        CIRCUIT_OPEN.labels(self.breaker.name).set(1 if after == STATE_OPEN else 0)
        if after != before:
            CIRCUIT_TRANSITIONS.labels(self.breaker.name, after).inc()
            level = logging.INFO if after == STATE_CLOSED else logging.WARNING
            log.log(
                level,
                "circuit %s: %s -> %s",
                self.breaker.name,
                before,
                after,
                extra={"breaker": self.breaker.name, "state": after},
            )
