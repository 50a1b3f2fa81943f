"""Python records for every Avro schema in schemas/.

Each dataclass mirrors one `.avsc` file field for field; tests/unit/contracts/test_records.py
checks them against the schemas, so the schemas stay the single contract.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar


class Priority(enum.Enum):
    """Least urgent first, as the schema lists them; INFO only informs (docs/INCIDENTS.md)."""

    INFO = "INFO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class Channel(enum.Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    PUSH = "PUSH"
    SLACK = "SLACK"
    TEAMS = "TEAMS"
    VOICE = "VOICE"
    WEBHOOK = "WEBHOOK"


class Tier(enum.Enum):
    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"
    FALLBACK = "FALLBACK"


class NotificationKind(enum.Enum):
    ALERT = "ALERT"
    ACKNOWLEDGED_NOTICE = "ACKNOWLEDGED_NOTICE"
    RESOLVED_NOTICE = "RESOLVED_NOTICE"


class FailureCategory(enum.Enum):
    TRANSIENT = "TRANSIENT"
    PERMANENT = "PERMANENT"
    CONFIGURATION = "CONFIGURATION"


class WebhookAuth(enum.Enum):
    NONE = "NONE"
    BEARER = "BEARER"
    API_KEY = "API_KEY"


class CallbackStatus(enum.Enum):
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    DEFERRED = "DEFERRED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Record:
    """Base of every topic record; AVRO_NAME is the schema's full name."""

    AVRO_NAME: ClassVar[str] = ""


# --- incidents -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentOpened(Record):
    AVRO_NAME: ClassVar[str] = "notifier.IncidentOpened"
    event_id: str
    occurred_at: datetime
    incident_id: str
    title: str
    priority: Priority
    escalation_level: int
    user_ids: list[str]
    description: str | None = None
    service: str | None = None
    url: str | None = None
    channels: list[Channel] | None = None
    skip_tiers: bool = False
    self_alert: bool = False
    team_name: str | None = None
    alert_count: int | None = None
    triggered_at: datetime | None = None
    dashboard_url: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentEscalated(Record):
    AVRO_NAME: ClassVar[str] = "notifier.IncidentEscalated"
    event_id: str
    occurred_at: datetime
    incident_id: str
    title: str
    priority: Priority
    escalation_level: int
    user_ids: list[str]
    description: str | None = None
    service: str | None = None
    url: str | None = None
    channels: list[Channel] | None = None
    skip_tiers: bool = False
    self_alert: bool = False
    team_name: str | None = None
    alert_count: int | None = None
    triggered_at: datetime | None = None
    dashboard_url: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentAcknowledged(Record):
    AVRO_NAME: ClassVar[str] = "notifier.IncidentAcknowledged"
    event_id: str
    occurred_at: datetime
    incident_id: str
    by_user_id: str | None = None
    via: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentResolved(Record):
    AVRO_NAME: ClassVar[str] = "notifier.IncidentResolved"
    event_id: str
    occurred_at: datetime
    incident_id: str
    by_user_id: str | None = None
    via: str | None = None
    note: str | None = None


# --- users -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlackConnection(Record):
    AVRO_NAME: ClassVar[str] = "notifier.SlackConnection"
    slack_user_id: str
    active: bool
    team_id: str | None = None


@dataclass(frozen=True, slots=True)
class TeamsConnection(Record):
    AVRO_NAME: ClassVar[str] = "notifier.TeamsConnection"
    webhook_url: str
    active: bool
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookEndpoint(Record):
    AVRO_NAME: ClassVar[str] = "notifier.WebhookEndpoint"
    url: str
    auth: WebhookAuth
    method: str = "POST"
    secret_ref: str | None = None
    api_key_header: str | None = None
    signing_secret_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelPreference(Record):
    AVRO_NAME: ClassVar[str] = "notifier.ChannelPreference"
    channel: Channel
    enabled: bool
    order: int


@dataclass(frozen=True, slots=True)
class QuietHours(Record):
    AVRO_NAME: ClassVar[str] = "notifier.QuietHours"
    start: str
    end: str
    channel: Channel | None = None


@dataclass(frozen=True, slots=True)
class UserProfile(Record):
    AVRO_NAME: ClassVar[str] = "notifier.UserProfile"
    user_id: str
    name: str
    updated_at: datetime
    email: str | None = None
    phone: str | None = None
    push_tokens: list[str] = field(default_factory=list)
    slack: SlackConnection | None = None
    teams: TeamsConnection | None = None
    webhook: WebhookEndpoint | None = None
    preferences: list[ChannelPreference] = field(default_factory=list)
    time_zone: str = "UTC"
    quiet_hours: QuietHours | None = None


# --- notify.<channel>, notify.retry.<delay> --------------------------------------------


@dataclass(frozen=True, slots=True)
class SendCommand(Record):
    AVRO_NAME: ClassVar[str] = "notifier.SendCommand"
    command_id: str
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    tier: Tier
    escalation_level: int
    attempt: int
    priority: Priority
    kind: NotificationKind
    address: str
    title: str
    body: str
    incident_at: datetime
    address_params: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    provider: str | None = None
    repeat: int = 0
    not_before: datetime | None = None
    bundled: dict[str, str] = field(default_factory=dict)
    requested_by: str | None = None
    service: str | None = None
    team_name: str | None = None
    alert_count: int | None = None
    triggered_at: datetime | None = None
    dashboard_url: str | None = None


# --- delivery.events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationQueued(Record):
    AVRO_NAME: ClassVar[str] = "notifier.NotificationQueued"
    event_id: str
    occurred_at: datetime
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    tier: Tier
    escalation_level: int
    priority: Priority
    kind: NotificationKind
    repeat: int = 0
    held_until: datetime | None = None
    held_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAttempted(Record):
    AVRO_NAME: ClassVar[str] = "notifier.DeliveryAttempted"
    event_id: str
    occurred_at: datetime
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    attempt: int
    provider: str
    requested_by: str | None = None


@dataclass(frozen=True, slots=True)
class DeliverySent(Record):
    AVRO_NAME: ClassVar[str] = "notifier.DeliverySent"
    event_id: str
    occurred_at: datetime
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    attempt: int
    provider: str
    provider_message_id: str
    latency_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryDelivered(Record):
    AVRO_NAME: ClassVar[str] = "notifier.DeliveryDelivered"
    event_id: str
    occurred_at: datetime
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    provider: str
    provider_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryFailed(Record):
    AVRO_NAME: ClassVar[str] = "notifier.DeliveryFailed"
    event_id: str
    occurred_at: datetime
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    attempt: int
    category: FailureCategory
    error: str
    final: bool
    provider: str | None = None
    status_code: int | None = None
    retry_after_ms: int | None = None
    latency_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeliveryCancelled(Record):
    AVRO_NAME: ClassVar[str] = "notifier.DeliveryCancelled"
    event_id: str
    occurred_at: datetime
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class TierEscalated(Record):
    AVRO_NAME: ClassVar[str] = "notifier.TierEscalated"
    event_id: str
    occurred_at: datetime
    incident_id: str
    user_id: str
    escalation_level: int
    from_tier: Tier
    to_tier: Tier
    reason: str


@dataclass(frozen=True, slots=True)
class CriticalDeliveryFailure(Record):
    AVRO_NAME: ClassVar[str] = "notifier.CriticalDeliveryFailure"
    event_id: str
    occurred_at: datetime
    incident_id: str
    user_id: str
    escalation_level: int
    failed_channels: list[Channel]
    ops_incident_id: str


@dataclass(frozen=True, slots=True)
class UserUnreachable(Record):
    AVRO_NAME: ClassVar[str] = "notifier.UserUnreachable"
    event_id: str
    occurred_at: datetime
    incident_id: str
    user_id: str
    escalation_level: int
    reason: str


# --- provider.callbacks, dispatch.commands, deadletter ---------------------------------


@dataclass(frozen=True, slots=True)
class ProviderCallback(Record):
    AVRO_NAME: ClassVar[str] = "notifier.ProviderCallback"
    event_id: str
    occurred_at: datetime
    received_at: datetime
    incident_id: str
    notification_id: str
    channel: Channel
    provider: str
    status: CallbackStatus
    raw_status: str
    provider_message_id: str | None = None
    error: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class RawCallback(Record):
    AVRO_NAME: ClassVar[str] = "notifier.RawCallback"
    event_id: str
    received_at: datetime
    source: str
    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReceiptDue(Record):
    AVRO_NAME: ClassVar[str] = "notifier.ReceiptDue"
    event_id: str
    occurred_at: datetime
    due_at: datetime
    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel
    provider: str


@dataclass(frozen=True, slots=True)
class RepeatDue(Record):
    AVRO_NAME: ClassVar[str] = "notifier.RepeatDue"
    event_id: str
    occurred_at: datetime
    due_at: datetime
    incident_id: str
    user_id: str
    escalation_level: int
    tier: Tier
    repeat: int


@dataclass(frozen=True, slots=True)
class ResendRequested(Record):
    AVRO_NAME: ClassVar[str] = "notifier.ResendRequested"
    event_id: str
    occurred_at: datetime
    incident_id: str
    notification_id: str
    user_id: str
    channel: Channel
    escalation_level: int
    attempt: int
    requested_by: str
    kind: NotificationKind = NotificationKind.ALERT
    repeat: int = 0


@dataclass(frozen=True, slots=True)
class ThrottleFlushDue(Record):
    AVRO_NAME: ClassVar[str] = "notifier.ThrottleFlushDue"
    event_id: str
    occurred_at: datetime
    due_at: datetime
    user_id: str
    channel: Channel


@dataclass(frozen=True, slots=True)
class EscalateTier(Record):
    AVRO_NAME: ClassVar[str] = "notifier.EscalateTier"
    command_id: str
    occurred_at: datetime
    incident_id: str
    user_id: str
    escalation_level: int
    tier: Tier
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter(Record):
    AVRO_NAME: ClassVar[str] = "notifier.DeadLetter"
    event_id: str
    occurred_at: datetime
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str
    error_type: str
    reason: str
    worker: str
    key: bytes | None = None
    value: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)


TOP_LEVEL_RECORDS: tuple[type[Record], ...] = (
    IncidentOpened,
    IncidentEscalated,
    IncidentAcknowledged,
    IncidentResolved,
    UserProfile,
    SendCommand,
    NotificationQueued,
    DeliveryAttempted,
    DeliverySent,
    DeliveryDelivered,
    DeliveryFailed,
    DeliveryCancelled,
    TierEscalated,
    CriticalDeliveryFailure,
    UserUnreachable,
    ProviderCallback,
    RawCallback,
    ReceiptDue,
    RepeatDue,
    ResendRequested,
    ThrottleFlushDue,
    EscalateTier,
    DeadLetter,
)
"""Records that are a topic's value (each has its own .avsc file)."""
