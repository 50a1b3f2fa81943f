"""The benchmark's arithmetic: percentiles and the product goals, checked against what was
measured. Pure functions, so the goals live in one place and are tested as a table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of `values` (inclusive method), rounded to 0.1; {} when empty."""
    if not values:
        return {}
    if len(values) == 1:
        only = round(values[0], 1)
        return {"p50": only, "p95": only, "p99": only, "max": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values), 1),
    }


@dataclass(frozen=True)
class Goal:
    """One product goal: a figure of the results, and the bound it must meet."""

    name: str
    path: tuple[str, ...]  # where the figure is in the results
    bound: float
    at_least: bool  # True: figure >= bound; False: figure <= bound
    unit: str
    # added to the bound per ms the sandbox waited before answering (a slow provider)
    per_provider_ms: float = 0.0

    def figure(self, results: dict[str, Any]) -> float | None:
        """The measured figure, or None when the run did not measure it."""
        found: Any = results
        for part in self.path:
            if not isinstance(found, dict) or part not in found:
                return None
            found = found[part]
        return float(found) if isinstance(found, int | float) else None

    def bound_for(self, results: dict[str, Any]) -> float:
        """The bound for this run: a slow provider's wait is allowed for where it counts."""
        return self.bound + self.per_provider_ms * float(results.get("provider_latency_ms") or 0)

    def met(self, results: dict[str, Any]) -> bool | None:
        """Whether the goal is met; None when it was not measured."""
        value = self.figure(results)
        if value is None:
            return None
        bound = self.bound_for(results)
        return value >= bound if self.at_least else value <= bound


# the goals of the hot path (issue "ten times faster"): BullMQ + Redis did about 4,500
# sends/s at 0.44 ms of CPU each on these machines; a 50 ms provider must not hold up more
# than its own 50 ms
GOALS = (
    Goal("throughput", ("throughput", "notifications_per_s"), 5000, True, "notifications/s"),
    Goal(
        "CPU per notification: worker, Kafka, registry, PostgreSQL",
        ("cpu_ms_per_notification", "engine"),
        0.4,
        False,
        "ms",
    ),
    Goal("share of the raw Kafka ceiling", ("share_of_raw",), 0.10, True, ""),
    Goal(
        "p99 incident -> first provider request",
        ("latency_ms", "p99"),
        10,
        False,
        "ms",
        per_provider_ms=1.1,
    ),
    Goal("p99 delivery event -> row", ("event_to_row_ms", "p99"), 1000, False, "ms"),
    Goal("rebuild rate", ("rebuild", "events_per_s"), 20000, True, "events/s"),
    Goal("worker RSS with the bench's users", ("worker_rss_mb",), 400, False, "MB"),
)


def check_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal with its figure and verdict ("met", "missed" or "not measured")."""
    out = []
    for goal in GOALS:
        met = goal.met(results)
        bound = goal.bound_for(results)
        out.append(
            {
                "goal": goal.name,
                "bound": f"{'>=' if goal.at_least else '<='} {bound:g} {goal.unit}".strip(),
                "measured": goal.figure(results),
                "verdict": "not measured" if met is None else ("met" if met else "missed"),
            }
        )
    return out
