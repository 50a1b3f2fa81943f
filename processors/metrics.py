"""Prometheus metrics of the worker, served by its metrics endpoint (processors/endpoint.py).

Every metric of the worker is defined here; the modules that do the work call one line to
observe. docs/OPERATIONS.md says what each one means.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from notifier.contracts.records import NotificationQueued

SENDS = Counter(
    "notifier_sends_total",
    "Provider requests by channel, provider and outcome.",
    ["channel", "provider", "outcome"],
)
DUPLICATE_COMMANDS = Counter(
    "notifier_duplicate_commands_total",
    "Copies of a command this worker had already finished, not sent again, by channel.",
    ["channel"],
)
CIRCUIT_TRANSITIONS = Counter(
    "notifier_circuit_transitions_total", "Circuit breaker state changes.", ["breaker", "to_state"]
)
CIRCUIT_OPEN = Gauge("notifier_circuit_open", "1 while a provider's circuit is open.", ["breaker"])
STALLED_PARTITIONS = Counter(
    "notifier_stalled_partitions_total",
    "Partitions found behind their end with nothing handled for a while, read again, by topic.",
    ["topic"],
)
DEAD_LETTERS = Counter(
    "notifier_dead_letters_total", "Messages sent to the dead-letter topic.", ["topic", "stage"]
)
RETRY_LATENESS = Histogram(
    "notifier_retry_lateness_seconds",
    "How long after its due time a retry went back to its channel.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
QUEUED = Counter(
    "notifier_notifications_queued_total",
    "Notifications queued by the dispatcher (NotificationQueued), by channel and kind.",
    ["channel", "kind"],
)
INCIDENT_TO_REQUEST = Histogram(
    "notifier_incident_to_request_seconds",
    "From the incident event's time to the start of a provider request, by channel "
    "(retries and throttle holds included).",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
EVENT_TO_ROW = Histogram(
    "notifier_projection_event_to_row_seconds",
    "From a delivery event or callback's time to the commit of its NotificationLog batch.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RETRIES_SCHEDULED = Counter(
    "notifier_retries_scheduled_total",
    "Next attempts put on a delay topic after a transient failure, by channel and step "
    "(the delay topic).",
    ["channel", "step"],
)
RATE_LIMIT_WAIT = Histogram(
    "notifier_rate_limit_wait_seconds",
    "Time a send waited in its provider's rate limiter, by channel and provider.",
    ["channel", "provider"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
)
# (metric, label values) -> its child: prometheus_client's labels() takes a lock and checks
# its arguments on every call, ~1.5% of the worker's CPU under make bench for the few
# label sets the hot path uses. Only for metrics whose children are never removed.
# keyed by the metric itself, not its id(): an id can be reused once an object is gone
_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """The child of `metric` for `values`, looked up once."""
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


CONSUMER_LAG = Gauge(
    "notifier_consumer_lag_messages",
    "Messages behind the end of each assigned partition (highwater minus committed or "
    "read position), sampled every few seconds, by consumer (faust, projection, retry).",
    ["consumer", "topic", "partition"],
)


def notifications_queued(events: Iterable[Any]) -> None:
    """Count the NotificationQueued events among `events`."""
    for event in events:
        if isinstance(event, NotificationQueued):
            labelled(QUEUED, event.channel.value, event.kind.value).inc()


def projected(records: Iterable[Any]) -> None:
    """Observe event-to-row latency of records whose batch has just been committed."""
    now = time.time()
    for record in records:
        occurred: datetime | None = getattr(record, "occurred_at", None)
        if occurred is not None:
            EVENT_TO_ROW.observe(max(0.0, now - occurred.timestamp()))


def request_starting(channel: str, incident_at: datetime) -> None:
    """A provider request is about to start for an incident that happened at `incident_at`."""
    labelled(INCIDENT_TO_REQUEST, channel).observe(max(0.0, time.time() - incident_at.timestamp()))
