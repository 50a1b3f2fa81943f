"""Representative records for tests: every field filled, built from the type hints."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    DeliveryAttempted,
    DeliverySent,
    NotificationKind,
    NotificationQueued,
    Priority,
    ProviderCallback,
    Record,
    Tier,
)
from notifier.domain.ids import notification_id

R = TypeVar("R", bound=Record)
FIXED_TIME = datetime(2026, 11, 25, 3, 0, 0, 123000, tzinfo=UTC)


def _value(tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in typing.get_args(tp) if a is not type(None)), name)
    if origin is list:
        return [_value(typing.get_args(tp)[0], name)]
    if origin is dict:
        value_type = typing.get_args(tp)[1]
        return {"k": b"v" if value_type is bytes else "v"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return list(tp)[-1]
    if isinstance(tp, type) and issubclass(tp, Record):
        return sample(tp)
    if tp is datetime:
        return FIXED_TIME
    if tp is bool:
        return True
    if tp is int:
        return 7
    if tp is bytes:
        return b"\x00\xffbytes"
    return f"{name}-value"


def sample(cls: type[R], **overrides: Any) -> R:
    """An instance of `cls` with every field, optional ones included, set."""
    hints = typing.get_type_hints(cls)
    values = {f.name: _value(hints[f.name], f.name) for f in dataclasses.fields(cls)}
    values.update(overrides)
    return cls(**values)


SMS_T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    """SMS_T0 plus `seconds`."""
    return SMS_T0 + timedelta(seconds=seconds)


class SmsNotification:
    """The delivery events and provider callbacks of one SMS notification, sent at the
    first attempt; its times are `at(seconds)`."""

    def __init__(self, user: str = "carol") -> None:
        self.incident_id = f"inc-{uuid.uuid4().hex[:12]}"
        self.id = notification_id(self.incident_id, 1, user, Channel.SMS)
        self.user = user

    def _base(self, s: int) -> dict[str, Any]:
        return {
            "notification_id": self.id,
            "incident_id": self.incident_id,
            "user_id": self.user,
            "channel": Channel.SMS,
            "occurred_at": at(s),
        }

    def queued(self, s: int = 0) -> NotificationQueued:
        return NotificationQueued(
            event_id=f"{self.id}-q",
            tier=Tier.PRIMARY,
            escalation_level=1,
            priority=Priority.HIGH,
            kind=NotificationKind.ALERT,
            **self._base(s),
        )

    def attempted(self, s: int = 1) -> DeliveryAttempted:
        return DeliveryAttempted(
            event_id=f"{self.id}-a1", attempt=1, provider="twilio", **self._base(s)
        )

    def sent(self, s: int = 2) -> DeliverySent:
        return DeliverySent(
            event_id=f"{self.id}-s1",
            attempt=1,
            provider="twilio",
            provider_message_id=f"SM{self.id[:8]}",
            latency_ms=40,
            **self._base(s),
        )

    def events(self) -> list[Record]:
        """Queued, attempted, sent: what the worker publishes for a sent SMS."""
        return [self.queued(), self.attempted(), self.sent()]

    def callback(
        self, status: CallbackStatus, s: int, raw: str = "", error: str | None = None
    ) -> ProviderCallback:
        return ProviderCallback(
            event_id=f"{self.id}-cb-{raw or status.value.lower()}-{s}",
            occurred_at=at(s),
            received_at=at(s) + timedelta(milliseconds=300),
            incident_id=self.incident_id,
            notification_id=self.id,
            channel=Channel.SMS,
            provider="twilio",
            status=status,
            raw_status=raw or status.value.lower(),
            provider_message_id=f"SM{self.id[:8]}",
            error=error,
            user_id=self.user,
        )
