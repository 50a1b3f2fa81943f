"""Prometheus metrics of the worker (exposed by the metrics endpoint once it lands)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENDS = Counter(
    "notifier_sends_total",
    "Provider requests by channel, provider and outcome.",
    ["channel", "provider", "outcome"],
)
CIRCUIT_TRANSITIONS = Counter(
    "notifier_circuit_transitions_total", "Circuit breaker state changes.", ["breaker", "to_state"]
)
CIRCUIT_OPEN = Gauge("notifier_circuit_open", "1 while a provider's circuit is open.", ["breaker"])
DEAD_LETTERS = Counter(
    "notifier_dead_letters_total", "Messages sent to the dead-letter topic.", ["topic", "stage"]
)
RETRY_LATENESS = Histogram(
    "notifier_retry_lateness_seconds",
    "How long after its due time a retry went back to its channel.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
