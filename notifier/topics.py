"""Every topic of the notifier, declared once, and their idempotent creation.

The declaration says what each topic carries (its record types), how it is kept
(retention, compaction), and is the only place topic names are spelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from notifier.contracts import records as r
from notifier.settings import Settings

DAY_MS = 24 * 3600 * 1000
FOREVER = "-1"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: logical name, key, the records it carries and its topic configs."""

    name: str
    key: str
    records: tuple[type[r.Record], ...]
    config: Mapping[str, str] = field(default_factory=dict)
    doc: str = ""


def channel_topic(channel: r.Channel) -> str:
    """Logical name of the send-command topic of `channel`."""
    return f"notify.{channel.value.lower()}"


def retry_topic(delay_s: int) -> str:
    """Logical name of the delay topic for one backoff step."""
    return f"notify.retry.{delay_s}s"


def declared_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic, in the order they are created and listed."""
    keep = {"cleanup.policy": "delete", "retention.ms": FOREVER}
    week = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    specs = [
        TopicSpec(
            "incidents",
            "incident_id",
            (r.IncidentOpened, r.IncidentEscalated, r.IncidentAcknowledged, r.IncidentResolved),
            keep,
            "Incident lifecycle; the input of the dispatcher.",
        ),
        TopicSpec(
            "users",
            "user_id",
            (r.UserProfile,),
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
            "Latest profile of every user (compacted).",
        ),
    ]
    specs += [
        TopicSpec(
            channel_topic(ch),
            "incident_id",
            (r.SendCommand,),
            week,
            f"Send commands for {ch.value.lower()}.",
        )
        for ch in r.Channel
    ]
    specs += [
        TopicSpec(
            retry_topic(d),
            "incident_id",
            (r.SendCommand,),
            {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
            f"Send commands waiting {d} s before their next attempt.",
        )
        for d in settings.every_retry_delay
    ]
    specs += [
        TopicSpec(
            "delivery.events",
            "incident_id",
            (
                r.NotificationQueued,
                r.DeliveryAttempted,
                r.DeliverySent,
                r.DeliveryDelivered,
                r.DeliveryFailed,
                r.DeliveryCancelled,
                r.TierEscalated,
                r.CriticalDeliveryFailure,
                r.UserUnreachable,
                r.ReceiptDue,
            ),
            keep,
            "Every step of every notification; the NotificationLog is built from it.",
        ),
        TopicSpec(
            "provider.callbacks",
            "incident_id",
            (r.ProviderCallback,),
            keep,
            "Verified, normalised provider status callbacks.",
        ),
        TopicSpec(
            "callbacks.raw",
            "source",
            (r.RawCallback,),
            {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
            "Verified inbound webhook requests as received, before parsing (reprocessable).",
        ),
        TopicSpec(
            "receipt.deadlines",
            "incident_id",
            (r.ReceiptDue,),
            week,
            "Delivery receipts awaited for sent alerts, held until due.",
        ),
        TopicSpec(
            "notify.repeats",
            "incident_id",
            (r.RepeatDue,),
            week,
            "Repeats of CRITICAL incidents' last tier, held until due.",
        ),
        TopicSpec(
            "notify.throttle",
            "user_id",
            (r.SendCommand, r.ThrottleFlushDue),
            week,
            "SMS and voice commands on their way through the per-person throttle.",
        ),
        TopicSpec(
            "throttle.timers",
            "user_id",
            (r.ThrottleFlushDue,),
            week,
            "When held messages of a throttled person may go out, held until due.",
        ),
        TopicSpec(
            "dispatch.commands",
            "incident_id",
            (r.EscalateTier, r.RepeatDue, r.ResendRequested),
            week,
            "Tier escalations, repeats and operator resends for the dispatcher.",
        ),
        TopicSpec(
            "deadletter",
            "original key",
            (r.DeadLetter,),
            {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
            "Messages that could not be decoded or handled, with the reason.",
        ),
    ]
    return specs


def full_name(settings: Settings, logical: str) -> str:
    """The real topic name: the configured prefix and the logical name."""
    return f"{settings.topic_prefix}{logical}"


def subjects(settings: Settings) -> list[tuple[str, str]]:
    """(topic, record name) of every record on every topic, for the Schema Registry."""
    return [
        (full_name(settings, spec.name), rec.AVRO_NAME)
        for spec in declared_topics(settings)
        for rec in spec.records
    ]


@dataclass(frozen=True)
class TopicAction:
    """What ensure_topics did to one topic."""

    topic: str
    action: str  # created | updated | unchanged | differs
    detail: str = ""


def ensure_topics(bootstrap: str, settings: Settings, timeout_s: float = 30.0) -> list[TopicAction]:
    """Create missing topics and set declared configs on existing ones; safe to run again."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=timeout_s)
    brokers = len(metadata.brokers)
    replication = settings.replication_factor or min(3, brokers)
    specs = {full_name(settings, s.name): s for s in declared_topics(settings)}

    def configs_of(spec: TopicSpec) -> dict[str, str]:
        wanted = dict(spec.config)
        if replication >= 3:
            wanted["min.insync.replicas"] = "2"
        return wanted

    actions: list[TopicAction] = []
    missing = [name for name in specs if name not in metadata.topics]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(n, settings.topic_partitions, replication, config=configs_of(specs[n]))
                for n in missing
            ],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                actions.append(
                    TopicAction(
                        name,
                        "created",
                        f"{settings.topic_partitions} partitions, replication {replication}",
                    )
                )
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
                actions.append(TopicAction(name, "unchanged", "created concurrently"))

    existing = [n for n in specs if n not in missing]
    if existing:
        described = admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, n) for n in existing], request_timeout=timeout_s
        )
        to_alter: list[tuple[str, ConfigResource, list[str]]] = []
        for resource, fut in described.items():
            current = {k: v.value for k, v in fut.result().items()}
            wanted = configs_of(specs[resource.name])
            changed = [k for k, v in wanted.items() if current.get(k) != v]
            partitions = len(metadata.topics[resource.name].partitions)
            if changed:
                entries = [
                    ConfigEntry(k, wanted[k], incremental_operation=AlterConfigOpType.SET)
                    for k in changed
                ]
                to_alter.append(
                    (
                        resource.name,
                        ConfigResource(
                            ResourceType.TOPIC, resource.name, incremental_configs=entries
                        ),
                        changed,
                    )
                )
            elif partitions < settings.topic_partitions:
                actions.append(
                    TopicAction(
                        resource.name,
                        "differs",
                        f"{partitions} partitions, {settings.topic_partitions} declared: "
                        "not changed (adding partitions moves keys)",
                    )
                )
            else:
                actions.append(TopicAction(resource.name, "unchanged"))
        if to_alter:
            altered = admin.incremental_alter_configs([res for _, res, _ in to_alter])
            for name, _, changed in to_alter:
                next(f for res, f in altered.items() if res.name == name).result()
                actions.append(TopicAction(name, "updated", "set " + ", ".join(changed)))
    order = list(specs)
    return sorted(actions, key=lambda a: order.index(a.topic))


def describe_topics(
    bootstrap: str, names: Iterable[str], timeout_s: float = 30.0
) -> dict[str, dict[str, str]]:
    """Partitions, replication and non-default configs of the named topics, as text."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=timeout_s)
    present = [n for n in names if n in metadata.topics]
    result: dict[str, dict[str, str]] = {}
    if not present:
        return result
    described = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, n) for n in present], request_timeout=timeout_s
    )
    for resource, fut in described.items():
        topic = metadata.topics[resource.name]
        first = next(iter(topic.partitions.values()), None)
        info = {
            "partitions": str(len(topic.partitions)),
            "replication": str(len(first.replicas) if first else 0),
        }
        for key, entry in fut.result().items():
            if not entry.is_default:
                info[key] = str(entry.value)
        result[resource.name] = info
    return result
