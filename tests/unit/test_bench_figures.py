"""The benchmark's goals and percentiles: the verdicts `make bench` prints."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.bench.figures import GOALS, check_goals, percentiles

MET = {
    "throughput": {"notifications_per_s": 5400.0},
    "cpu_ms_per_notification": {"engine": 0.38, "sandbox": 2.0},
    "share_of_raw": 0.12,
    "latency_ms": {"p99": 9.0},
    "event_to_row_ms": {"p99": 300.0},
    "rebuild": {"events_per_s": 25000.0},
    "worker_rss_mb": 310.0,
}
CPU = "CPU per notification: worker, Kafka, registry, PostgreSQL"
LATENCY = "p99 incident -> first provider request"


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    return {g["goal"]: g["verdict"] for g in check_goals(results)}


@pytest.mark.parametrize(
    ("change", "goal", "verdict"),
    [
        ({}, "throughput", "met"),
        ({"throughput": {"notifications_per_s": 5000}}, "throughput", "met"),
        ({"throughput": {"notifications_per_s": 4999.9}}, "throughput", "missed"),
        ({"cpu_ms_per_notification": {"engine": 0.41}}, CPU, "missed"),
        ({"cpu_ms_per_notification": {"sandbox": 0.1}}, CPU, "not measured"),
        ({"share_of_raw": 0.0999}, "share of the raw Kafka ceiling", "missed"),
        ({"latency_ms": {"p99": 10}}, LATENCY, "met"),
        ({"latency_ms": {"p99": 10.1}}, LATENCY, "missed"),
        ({"latency_ms": {"p99": 64.9}, "provider_latency_ms": 50}, LATENCY, "met"),
        ({"latency_ms": {"p99": 65.1}, "provider_latency_ms": 50}, LATENCY, "missed"),
        ({"latency_ms": {}}, LATENCY, "not measured"),
        ({"event_to_row_ms": {"p99": 1000.1}}, "p99 delivery event -> row", "missed"),
        ({"rebuild": {"events_per_s": 19999}}, "rebuild rate", "missed"),
        ({"worker_rss_mb": 401}, "worker RSS with the bench's users", "missed"),
        ({"worker_rss_mb": None}, "worker RSS with the bench's users", "not measured"),
    ],
)
def test_each_goal_is_judged_against_its_bound(
    change: dict[str, Any], goal: str, verdict: str
) -> None:
    assert verdicts({**MET, **change})[goal] == verdict


def test_every_goal_is_reported_with_its_figure() -> None:
    report = check_goals(MET)
    assert [g["goal"] for g in report] == [g.name for g in GOALS]
    assert all(g["verdict"] == "met" for g in report)
    assert report[0]["measured"] == 5400.0 and report[0]["bound"] == ">= 5000 notifications/s"
    slow = {g["goal"]: g["bound"] for g in check_goals({**MET, "provider_latency_ms": 50})}
    assert slow[LATENCY] == "<= 65 ms"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {}),
        ([7.0], {"p50": 7.0, "p95": 7.0, "p99": 7.0, "max": 7.0}),
        ([float(v) for v in range(101)], {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}),
    ],
)
def test_percentiles(values: list[float], expected: dict[str, float]) -> None:
    assert percentiles(values) == expected
