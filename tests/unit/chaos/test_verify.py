"""The drill's verdict (notifier/chaos/verify.py) over made-up outcomes."""

from __future__ import annotations

from dataclasses import replace

from notifier.chaos.inflight import AttemptTimes, Disruption
from notifier.chaos.plan import Plan
from notifier.chaos.verify import DeadLetterSeen, Row, verify

T0 = 1_800_000_000.0


def sent_once(
    plan: Plan,
) -> tuple[list[Row], dict[str, list[AttemptTimes]], list[dict[str, object]]]:
    """Every expected notification queued at T0, attempted once at T0+1 and received then."""
    rows = [
        Row(n, e.incident_id, e.user_id, e.channel.value, "SENT", 1, 1, "ALERT", 0, T0)
        for n, e in plan.expected().items()
    ]
    timings = {r.notification_id: [AttemptTimes(1, T0 + 1, T0 + 1.2)] for r in rows}
    requests: list[dict[str, object]] = [
        {"notification_id": r.notification_id, "started_at": T0 + 1.1, "finished_at": T0 + 1.15}
        for r in rows
    ]
    return rows, timings, requests


def test_the_verdict_names_every_kind_of_loss() -> None:
    plan = Plan("chaosunit", incidents=3, users=4, garbage=2)
    expected = plan.expected()
    ids = sorted(expected)
    rows, timings, requests = sent_once(plan)
    rows = [r for r in rows if r.notification_id != ids[0]]  # lost: no row
    requests = [q for q in requests if q["notification_id"] != ids[0]]
    never = rows[0].notification_id
    rows[0] = replace(rows[0], status="QUEUED", attempt_count=0)  # never left the queue
    requests = [q for q in requests if q["notification_id"] != never]
    timings.pop(never)
    attempts = {r.notification_id: [1] for r in rows if r.attempt_count}
    # one duplicate send, after a kill at which it was in flight: within the bound
    requests += [{"notification_id": ids[1], "started_at": T0 + 9, "finished_at": T0 + 9.1}]
    timings[ids[1]] = [AttemptTimes(1, T0 + 1, T0 + 1.2, T0 + 9)]
    kill = Disruption("kill", T0 + 1.15, T0 + 1.15, 1.2, "worker 1")
    dead = [
        DeadLetterSeen(plan.garbage_key(0), "incidents", 0, 5, "decode", "bad"),
        DeadLetterSeen("someone-else", "notify.email", 1, 7, "handle", "boom"),
    ]
    garbage = {plan.garbage_key(g) for g in range(plan.garbage)}
    verdict = verify(expected, rows, attempts, {}, requests, dead, garbage, [kill], 10, timings)
    failed = {c.name: c.value for c in verdict.checks if not c.ok}
    assert failed == {
        "lost: no row": "1",
        "lost: not in a terminal status": "1",
        "injected garbage dead-lettered": "1 of 2",
        "other dead letters": "1",
    }
    assert verdict.figures["duplicate_sends"] == 1
    assert verdict.figures["extra_requests_per_disruption"][0]["extra_requests"] == 1
    assert not verdict.ok


def test_more_than_one_extra_request_per_disruption_in_flight_fails() -> None:
    plan = Plan("chaosunit", incidents=2, users=4, garbage=0)
    expected = plan.expected()
    rows, timings, requests = sent_once(plan)
    twice, once, late = sorted(expected)[:3]
    kill = Disruption("kill", T0 + 1.15, T0 + 1.15, 1.2, "worker 1")
    broker = Disruption("broker stop", T0 + 20, T0 + 30, 20.0, "node 2")
    # `twice` was taken again two times after the kill (no second disruption in between)
    requests += [
        {"notification_id": twice, "started_at": T0 + t, "finished_at": T0 + t + 0.1}
        for t in (9, 10)
    ]
    timings[twice] = [AttemptTimes(1, T0 + 1, T0 + 1.2, T0 + 10)]
    # `once` once after the kill: fine
    requests += [{"notification_id": once, "started_at": T0 + 9, "finished_at": T0 + 9.1}]
    timings[once] = [AttemptTimes(1, T0 + 1, T0 + 1.2, T0 + 9)]
    # `late` was queued after the kill and done long before the broker stop, yet sent
    # again during it: no disruption explains that
    rows = [replace(r, queued_at=T0 + 5) if r.notification_id == late else r for r in rows]
    timings[late] = [AttemptTimes(1, T0 + 6, T0 + 6.2)]
    requests = [q for q in requests if q["notification_id"] != late]
    requests += [
        {"notification_id": late, "started_at": T0 + t, "finished_at": T0 + t + 0.1}
        for t in (6.1, 25)
    ]
    attempts = {r.notification_id: [1] for r in rows}
    verdict = verify(
        expected, rows, attempts, {}, requests, [], set(), [kill, broker], 100, timings
    )
    checks = {c.name: c for c in verdict.checks}
    bound = checks["extra requests beyond one per disruption in flight"]
    assert not bound.ok
    assert bound.value == "2 on 2 notifications"
    assert checks["provider-side duplicate sends"].ok  # 4 in all, within 2 x 100
    table = verdict.figures["extra_requests_per_disruption"]
    assert [(r["kind"], r["extra_requests"], r["notifications_with_extra"]) for r in table] == [
        ("kill", 2, 2),
        ("broker stop", 0, 0),
    ]
    # all but `late` were in flight at the kill; none was left when the broker stopped
    assert [r["in_flight"] for r in table] == [len(expected) - 1, 0]
    assert verdict.figures["extra_requests_unexplained"] == 2
    assert {s.split()[0] for s in verdict.samples["unexplained_extra_requests"]} == {twice, late}
