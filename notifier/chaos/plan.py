"""What the drill publishes and what it expects back: users, incidents, garbage, faults and
the settings of the workers. Pure: no Kafka, HTTP or SQL here.

Every user's channels sit in one tier and no later tier has a channel, so a failed channel
never escalates: the notifications of an incident are exactly its users' channels, with the
deterministic ids of `notifier.domain.ids`, whatever fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from notifier.contracts.records import (
    Channel,
    ChannelPreference,
    IncidentOpened,
    Priority,
    SlackConnection,
    TeamsConnection,
    UserProfile,
    WebhookAuth,
    WebhookEndpoint,
)
from notifier.domain import ids

# one channel set per kind of user; each set is one tier (primary, secondary, fallback)
CHANNEL_SETS: tuple[tuple[Channel, ...], ...] = (
    (Channel.EMAIL, Channel.SLACK, Channel.PUSH),
    (Channel.TEAMS, Channel.WEBHOOK),
    (Channel.SMS,),
    (Channel.VOICE,),
)
# failure injection per provider (sandbox Fault fields). Transient failures are retried;
# the webhook's 400s are permanent, so some notifications end FAILED at once. SMTP gets
# latency only: the sandbox does not record the notification id of a failed SMTP request.
FAULTS: dict[str, dict[str, object]] = {
    "smtp": {"latency_ms": 20},
    "slack": {"fail_rate": 0.1, "status": 503},
    "fcm": {"fail_rate": 0.1, "status": 503},
    "teams": {"fail_rate": 0.1, "status": 503},
    "twilio": {"fail_rate": 0.1, "status": 503, "latency_ms": 10},
    "webhook": {"fail_rate": 0.05, "status": 400},
}
# the settings the workers run with: short retries, no repeats, throttles or receipt
# deadlines (nothing that would wait minutes), rate limits that never hold a send back
WORKER_ENV: dict[str, str] = {
    "NOTIFIER_RETRY_DELAYS_S": "1,2,4",
    "NOTIFIER_REPEAT_MAX": "0",
    "NOTIFIER_THROTTLES": "",
    # Twilio requests carry our ids only in their status callback URL: name a bridge (none
    # runs, the sandbox posts no callback unasked) and ask no alert for a delivery receipt
    "NOTIFIER_CALLBACK_BASE_URL": "http://127.0.0.1:9/bridge",
    "NOTIFIER_RECEIPT_PRIORITIES": "",
    "NOTIFIER_RATE_LIMIT_PER_MIN": "1000000",
    "NOTIFIER_BREAKER_FAILURES": "1000",
    "NOTIFIER_SEND_TIMEOUT_S": "5",
    "NOTIFIER_SESSION_TIMEOUT_S": "8",
    "NOTIFIER_OPS_USER_IDS": "",
    "NOTIFIER_LOG_LEVEL": "WARNING",
}
PRIORITIES = (Priority.HIGH, Priority.MEDIUM, Priority.HIGH, Priority.LOW, Priority.CRITICAL)


@dataclass(frozen=True)
class Expected:
    """One notification the dispatcher must produce."""

    notification_id: str
    incident_id: str
    user_id: str
    channel: Channel


@dataclass(frozen=True)
class Plan:
    """The drill's input, derived from a run id and a size."""

    run_id: str
    incidents: int
    users: int = 200
    garbage: int = 20

    def user_id(self, n: int) -> str:
        """The n-th user of the drill (shared by runs: profiles are published each run)."""
        return f"chaos-user-{n}"

    def channels(self, n: int) -> tuple[Channel, ...]:
        """The channels of the n-th user."""
        return CHANNEL_SETS[n % len(CHANNEL_SETS)]

    def profiles(self, sandbox_url: str) -> list[UserProfile]:
        """Every user, with contacts that point at the sandbox."""
        now = datetime.now(UTC)
        out = []
        for n in range(self.users):
            uid = self.user_id(n)
            out.append(
                UserProfile(
                    user_id=uid,
                    name=uid,
                    updated_at=now,
                    email=f"{uid}@example.com",
                    phone="+14155550101",
                    push_tokens=[f"token-{uid}"],
                    slack=SlackConnection(f"U{n:06d}", True),
                    teams=TeamsConnection(f"{sandbox_url}/teams/webhook/{uid}", True),
                    webhook=WebhookEndpoint(f"{sandbox_url}/hooks/{uid}", WebhookAuth.NONE),
                    preferences=[
                        ChannelPreference(c, True, i) for i, c in enumerate(self.channels(n))
                    ],
                )
            )
        return out

    def incident_id(self, i: int) -> str:
        """Id of the i-th incident of this run."""
        return f"{self.run_id}-inc-{i}"

    def paged(self, i: int) -> list[int]:
        """Users paged by the i-th incident: one or two, of different kinds."""
        first = (i * 7) % self.users
        return [first] if i % 2 == 0 else [first, (first + 1) % self.users]

    def incident(self, i: int) -> IncidentOpened:
        """The i-th incident event."""
        iid = self.incident_id(i)
        return IncidentOpened(
            event_id=ids.event_id(iid, "opened"),
            occurred_at=datetime.now(UTC),
            incident_id=iid,
            title=f"chaos drill {iid}",  # Teams messages carry no id: the title names it
            priority=PRIORITIES[i % len(PRIORITIES)],
            escalation_level=1,
            user_ids=[self.user_id(n) for n in self.paged(i)],
        )

    def expected(self) -> dict[str, Expected]:
        """Every notification the incidents must produce, by notification id."""
        out: dict[str, Expected] = {}
        for i in range(self.incidents):
            iid = self.incident_id(i)
            for n in self.paged(i):
                uid = self.user_id(n)
                for channel in self.channels(n):
                    nid = ids.notification_id(iid, 1, uid, channel)
                    out[nid] = Expected(nid, iid, uid, channel)
        return out

    def attribute(self, request: dict[str, object]) -> str | None:
        """The notification a sandbox request was for: the id it carried, or for Teams (whose
        messages carry none) the one of the user in the webhook path and the incident in the
        title."""
        nid = request.get("notification_id")
        if nid:
            return str(nid)
        if request.get("provider") != "teams":
            return None
        user = str(request.get("path", "")).rsplit("/", 1)[-1]
        summary = request.get("summary")
        title = str(summary.get("title", "")) if isinstance(summary, dict) else ""
        found = re.search(rf"{re.escape(self.run_id)}-inc-\d+", title)
        if not found or not user:
            return None
        return ids.notification_id(found.group(0), 1, user, Channel.TEAMS)

    def garbage_key(self, g: int) -> str:
        """Key of the g-th undecodable message: what marks it in the dead letters."""
        return f"{self.run_id}-garbage-{g}"

    def garbage_messages(self) -> Iterator[tuple[str, bytes, bytes]]:
        """(logical topic, key, value) of each undecodable message, spread over the inputs."""
        topics = ("incidents", "notify.email", "notify.sms", "notify.slack")
        for g in range(self.garbage):
            # half not Avro at all, half the wire format with a schema id nobody registered
            value = b"not avro at all" if g % 2 else b"\x00\x7f\xff\xff\xf0garbage"
            yield topics[g % len(topics)], self.garbage_key(g).encode(), value

    def garbage_at(self) -> dict[int, int]:
        """After which incident index each garbage message goes out (spread over the run)."""
        if not self.garbage:
            return {}
        step = max(1, self.incidents // self.garbage)
        return {g: min(self.incidents - 1, g * step) for g in range(self.garbage)}
