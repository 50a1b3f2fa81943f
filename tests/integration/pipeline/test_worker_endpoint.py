"""The running worker's metrics endpoint: its probes answer, and after an incident went
through, /metrics carries the operating metrics with the labels of what happened."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from notifier.contracts.records import DeliverySent, NotificationQueued
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def has(samples: Samples, name: str, **labels: str) -> bool:
    wanted = set(labels.items())
    return any(n == name and wanted <= ls for (n, ls) in samples)


async def test_probes_answer_and_metrics_follow_an_incident(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    base = f"http://127.0.0.1:{p.env['NOTIFIER_METRICS_PORT']}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:

        async def page() -> Samples:
            return parse((await client.get("/metrics")).text)

        async def healthz() -> str:
            try:
                return (await client.get("/healthz")).text
            except httpx.TransportError:  # the worker is still starting
                return ""

        assert await eventually(healthz, lambda text: text == "ok", timeout_s=60) == "ok"
        ready = await eventually(
            lambda: client.get("/readyz"), lambda r: r.status_code == 200, timeout_s=60
        )
        assert ready.text == "ready"
        before = await page()

        event = p.incident("mailer", title="metrics endpoint")
        events = await p.events(
            "delivery.events",
            event.incident_id,
            lambda found: any(isinstance(e, DeliverySent) for e in found),
        )
        queued = next(e for e in events if isinstance(e, NotificationQueued))
        await eventually(lambda: p.row(queued.notification_id), lambda row: row is not None)

        def moved(name: str, **labels: str) -> Callable[[Samples], bool]:
            return lambda now: total(now, name, **labels) > total(before, name, **labels)

        checks: list[Callable[[Samples], bool]] = [
            moved("notifier_notifications_queued_total", channel="EMAIL", kind="ALERT"),
            moved("notifier_incident_to_request_seconds_count", channel="EMAIL"),
            moved("notifier_rate_limit_wait_seconds_count", channel="EMAIL", provider="smtp"),
            moved("notifier_sends_total", channel="EMAIL", provider="smtp", outcome="sent"),
            moved("notifier_projection_event_to_row_seconds_count"),
            # lag is sampled every 5 s, for each consumer of the worker
            lambda now: has(now, "notifier_consumer_lag_messages", consumer="faust"),
            lambda now: has(now, "notifier_consumer_lag_messages", consumer="projection"),
            lambda now: has(now, "notifier_consumer_lag_messages", consumer="retry"),
        ]
        after = await eventually(page, lambda now: all(c(now) for c in checks), 30, 0.5)
        incidents = f"{p.settings.topic_prefix}incidents"
        assert has(after, "notifier_consumer_lag_messages", consumer="faust", topic=incidents)
        assert all(v >= 0 for (n, _), v in after.items() if n == "notifier_consumer_lag_messages")
