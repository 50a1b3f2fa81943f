"""The Grafana dashboard is built on the metrics the code defines: every PromQL expression
names only real metrics, and the metrics operators need are all on it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.deploy.surfaces import DEPLOY, defined_metrics

DASHBOARD = DEPLOY / "grafana" / "notifier-dashboard.json"
# what is not a metric name in a PromQL expression once label matchers, ranges and
# groupings are taken out: aggregations, functions, operators
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev",
    "rate", "irate", "increase", "delta", "deriv", "histogram_quantile", "clamp_min",
    "clamp_max", "abs", "ceil", "floor", "round", "absent", "vector", "scalar", "time",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "changes",
    "resets", "label_replace", "and", "or", "unless", "bool", "offset",
}  # fmt: skip
REQUIRED = {
    "notifier_sends_total",
    "notifier_notifications_queued_total",
    "notifier_incident_to_request_seconds_bucket",
    "notifier_projection_event_to_row_seconds_bucket",
    "notifier_rate_limit_wait_seconds_bucket",
    "notifier_retries_scheduled_total",
    "notifier_circuit_open",
    "notifier_dead_letters_total",
    "notifier_consumer_lag_messages",
    "notifier_bridge_requests_total",
}


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(node: Any) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)


def expressions() -> list[str]:
    return [t["expr"] for p in panels(load()) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (strict: any other word is an error)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", "", text)  # numbers
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return words - PROMQL_WORDS


def test_every_panel_has_an_id_a_title_and_a_place() -> None:
    dashboard = load()
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(dashboard):
        assert panel["title"], panel
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["refId"] and target["expr"], panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("expr", expressions())
def test_expressions_read_only_metrics_the_code_defines(expr: str) -> None:
    names = metric_names(expr)
    assert names, f"no metric in {expr!r}"
    unknown = names - defined_metrics()
    assert not unknown, f"{expr!r} reads {sorted(unknown)}, which no code defines"


def test_quantiles_come_from_histogram_buckets_by_le() -> None:
    quantiles = [e for e in expressions() if "histogram_quantile" in e]
    assert quantiles
    for expr in quantiles:
        assert "_bucket" in expr and re.search(r"by \((le\b|[^)]*\ble\b)", expr), expr


def test_the_metrics_operators_need_are_all_on_it() -> None:
    shown = set().union(*(metric_names(e) for e in expressions()))
    assert not REQUIRED - shown, f"not on the dashboard: {sorted(REQUIRED - shown)}"


def test_the_word_filter_catches_an_unknown_metric() -> None:
    expr = 'sum by (channel) (rate(notifier_sent_total{outcome="sent"}[5m])) / up'
    assert metric_names(expr) == {"notifier_sent_total", "up"}
