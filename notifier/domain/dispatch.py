"""What the dispatcher decides for an incident event: which notifications, on which channels,
in which tier. A pure function of the event, the users' profiles and the clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from notifier.contracts.records import (
    Channel,
    EscalateTier,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    NotificationKind,
    NotificationQueued,
    Priority,
    Record,
    RepeatDue,
    ResendRequested,
    SendCommand,
    Tier,
    UserProfile,
    UserUnreachable,
)
from notifier.domain import ids
from notifier.domain.quiet_hours import Action, QuietDecision, held, quiet_hours
from notifier.domain.templates import IncidentText, details_of, render
from notifier.domain.tiers import (
    DEFAULT_TIERS,
    TIER_ORDER,
    ContactPoint,
    Reachability,
    reachability,
    unreachable_reason,
)

PRIORITY_RANK = {
    Priority.CRITICAL: 0,
    Priority.HIGH: 1,
    Priority.MEDIUM: 2,
    Priority.LOW: 3,
    Priority.INFO: 4,
}
"""Most urgent first: batches are sent in this order and a bundle takes its most urgent."""


@dataclass(frozen=True)
class Dispatch:
    """Commands to send and events to record, in the order they should be emitted."""

    commands: list[SendCommand] = field(default_factory=list)
    events: list[Record] = field(default_factory=list)
    repeats: list[RepeatDue] = field(default_factory=list)  # timers for repeat-until-ack


@dataclass
class IncidentMemory:
    """What the dispatcher keeps per incident: enough to address notices later."""

    title: str = ""
    priority: str = Priority.HIGH.value
    url: str | None = None
    status: str = "open"  # open | acknowledged | resolved
    levels: dict[str, list[str]] = field(default_factory=dict)  # level -> user ids notified
    channels: list[str] | None = None  # the incident's channel override, if any
    escalations: list[str] = field(default_factory=list)  # "user|level|tier" already sent
    # the incident's details, shown again in escalations, repeats, resends and notices
    service: str | None = None
    team_name: str | None = None
    alert_count: int | None = None
    triggered_at: datetime | None = None
    dashboard_url: str | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-able form for the incident table."""
        return {
            "title": self.title,
            "priority": self.priority,
            "url": self.url,
            "status": self.status,
            "levels": self.levels,
            "channels": self.channels,
            "escalations": self.escalations,
            "service": self.service,
            "team_name": self.team_name,
            "alert_count": self.alert_count,
            "triggered_at": self.triggered_at.isoformat() if self.triggered_at else None,
            "dashboard_url": self.dashboard_url,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> IncidentMemory:
        """Back from the incident table (a missing entry is a fresh memory)."""
        if not data:
            return cls()
        levels = data.get("levels")
        url = data.get("url")
        channels = data.get("channels")
        escalations = data.get("escalations")
        count = data.get("alert_count")
        triggered = data.get("triggered_at")
        return cls(
            title=str(data.get("title", "")),
            priority=str(data.get("priority", "HIGH")),
            url=url if isinstance(url, str) else None,
            status=str(data.get("status", "open")),
            levels={str(k): [str(u) for u in v] for k, v in levels.items()}
            if isinstance(levels, dict)
            else {},
            channels=[str(c) for c in channels] if isinstance(channels, list) else None,
            escalations=[str(e) for e in escalations] if isinstance(escalations, list) else [],
            service=_text_or_none(data.get("service")),
            team_name=_text_or_none(data.get("team_name")),
            alert_count=count if isinstance(count, int) else None,
            triggered_at=datetime.fromisoformat(triggered) if isinstance(triggered, str) else None,
            dashboard_url=_text_or_none(data.get("dashboard_url")),
        )

    @staticmethod
    def status_of(data: Mapping[str, object] | None) -> str:
        """The status in a stored memory, without rebuilding the rest (read per command)."""
        return str(data.get("status", "open")) if data else "open"

    def text(self, incident_id: str, level: int, by: str | None = None) -> IncidentText:
        """What a message says about the incident as remembered."""
        return IncidentText(
            self.title or incident_id,
            Priority(self.priority),
            level,
            url=self.url,
            by=by,
            **details_of(self),
        )

    def notified_users(self) -> list[str]:
        """Everyone sent an alert for this incident, at any level, in first-seen order."""
        seen: dict[str, None] = {}
        for level in sorted(self.levels, key=int):
            for user in self.levels[level]:
                seen.setdefault(user, None)
        return list(seen)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def incident_text(event: IncidentOpened | IncidentEscalated) -> IncidentText:
    """What a message says about an opened or escalated incident."""
    return IncidentText(
        event.title,
        event.priority,
        event.escalation_level,
        event.description,
        event.url,
        **details_of(event),
    )


def with_remembered_details(
    event: IncidentOpened | IncidentEscalated, memory: IncidentMemory
) -> IncidentOpened | IncidentEscalated:
    """`event` with the details it leaves out taken from the incident as remembered (an
    escalation from the incident tool often names only the title and the people)."""
    return replace(
        event,
        service=event.service or memory.service,
        team_name=event.team_name or memory.team_name,
        alert_count=event.alert_count if event.alert_count is not None else memory.alert_count,
        triggered_at=event.triggered_at or memory.triggered_at,
        dashboard_url=event.dashboard_url or memory.dashboard_url,
    )


def read_by(text: IncidentText, profile: UserProfile | None) -> IncidentText:
    """`text` as `profile`'s person reads it: times in their time zone."""
    if profile is None or profile.time_zone == text.time_zone:
        return text  # most people read UTC: no copy per command
    return replace(text, time_zone=profile.time_zone)


def _command(
    event_time: datetime,
    incident_id: str,
    user_id: str,
    point: ContactPoint,
    level: int,
    priority: Priority,
    kind: NotificationKind,
    text: IncidentText,
    now: datetime,
    repeat: int = 0,
) -> tuple[SendCommand, NotificationQueued]:
    nid = ids.notification_id(incident_id, level, user_id, point.channel, repeat, kind)
    title, body = render(point.channel, kind, text)
    command = SendCommand(
        command_id=ids.command_id(nid, 1),
        notification_id=nid,
        incident_id=incident_id,
        user_id=user_id,
        channel=point.channel,
        tier=point.tier,
        escalation_level=level,
        attempt=1,
        priority=priority,
        kind=kind,
        address=point.address,
        title=title,
        body=body,
        incident_at=event_time,
        address_params=dict(point.params),
        url=text.url,
        repeat=repeat,
        **details_of(text),
    )
    queued = NotificationQueued(
        event_id=ids.event_id(nid, "queued"),
        occurred_at=now,
        notification_id=nid,
        incident_id=incident_id,
        user_id=user_id,
        channel=point.channel,
        tier=point.tier,
        escalation_level=level,
        priority=priority,
        kind=kind,
        repeat=repeat,
    )
    return command, queued


def _redirected(
    quiet: QuietDecision,
    profile: UserProfile | None,
    tiers: Mapping[Channel, Tier],
    only: list[Channel] | None,
    tier: Tier | None,
) -> tuple[QuietDecision, Reachability | None]:
    """The person's quiet-hours channel alone, when it can carry this send (allowed by the
    incident, usable, and in the tier asked for); else the send is held."""
    channel = quiet.channel
    if channel is None or (only is not None and channel not in only):
        return held(quiet), None
    found = reachability(profile, tiers=tiers, only=[channel])
    usable = found.tier(tier) if tier is not None else found.first_tier()
    return (quiet, found) if usable else (held(quiet), None)


def _quiet(
    pair: tuple[SendCommand, NotificationQueued], quiet: QuietDecision
) -> tuple[SendCommand, NotificationQueued]:
    """The command and its queued event as quiet hours leave them: a held command waits
    (not_before: the end of the window) and its event says until when and why."""
    command, queued = pair
    if quiet.action is Action.HOLD:
        return (
            replace(command, not_before=quiet.until),
            replace(queued, held_until=quiet.until, held_reason=quiet.reason),
        )
    if quiet.action is Action.REDIRECT:
        note = f"{quiet.reason}: sent on {command.channel.value} instead"
        return command, replace(queued, held_reason=note)
    return command, queued


def dispatch_alert(
    event: IncidentOpened | IncidentEscalated,
    profiles: Mapping[str, UserProfile | None],
    now: datetime,
    *,
    tiers: Mapping[Channel, Tier] = DEFAULT_TIERS,
    tier: Tier | None = None,
    user_ids: list[str] | None = None,
    repeat: int = 0,
) -> Dispatch:
    """Notifications for an opened or escalated incident: each user's first usable tier
    (or `tier`, for a tier escalation; or every tier with skip_tiers), all channels at once.
    During a user's quiet hours, below CRITICAL: held until they end, or on the user's
    quiet-hours channel alone."""
    out = Dispatch()
    text = incident_text(event)
    for user_id in dict.fromkeys(user_ids if user_ids is not None else event.user_ids):
        profile = profiles.get(user_id)
        reach = reachability(profile, tiers=tiers, only=event.channels)
        quiet = quiet_hours(profile, event.priority, now)
        if quiet.action is Action.REDIRECT:
            quiet, redirected = _redirected(quiet, profile, tiers, event.channels, tier)
            reach = redirected or reach
        if tier is not None:
            send_tiers = [tier] if reach.tier(tier) else []
        elif event.skip_tiers:
            send_tiers = [t for t in TIER_ORDER if reach.tier(t)]
        else:
            first = reach.first_tier()
            send_tiers = [first] if first else []
        if not send_tiers:
            if tier is None:
                out.events.append(
                    UserUnreachable(
                        event_id=ids.event_id(event.event_id, user_id, "unreachable"),
                        occurred_at=now,
                        incident_id=event.incident_id,
                        user_id=user_id,
                        escalation_level=event.escalation_level,
                        reason=unreachable_reason(reach),
                    )
                )
            continue
        for send_tier in send_tiers:
            for point in reach.tier(send_tier):
                command, queued = _quiet(
                    _command(
                        event.occurred_at,
                        event.incident_id,
                        user_id,
                        point,
                        event.escalation_level,
                        event.priority,
                        NotificationKind.ALERT,
                        read_by(text, profile),
                        now,
                        repeat,
                    ),
                    quiet,
                )
                out.commands.append(command)
                out.events.append(queued)
    return out


def dispatch_notice(
    event: IncidentAcknowledged | IncidentResolved,
    memory: IncidentMemory,
    profiles: Mapping[str, UserProfile | None],
    now: datetime,
    *,
    tiers: Mapping[Channel, Tier] = DEFAULT_TIERS,
) -> Dispatch:
    """An informational notice on primary channels to everyone already alerted; no tiers.
    Quiet hours hold it or send it on the quiet-hours channel, as they do alerts."""
    out = Dispatch()
    kind = (
        NotificationKind.ACKNOWLEDGED_NOTICE
        if isinstance(event, IncidentAcknowledged)
        else NotificationKind.RESOLVED_NOTICE
    )
    level = max((int(level) for level in memory.levels), default=1)
    text = memory.text(event.incident_id, level, by=event.by_user_id)
    for user_id in memory.notified_users():
        profile = profiles.get(user_id)
        points = reachability(profile, tiers=tiers).tier(Tier.PRIMARY)
        quiet = quiet_hours(profile, Priority(memory.priority), now)
        if quiet.action is Action.REDIRECT:
            quiet, redirected = _redirected(quiet, profile, tiers, None, None)
            if redirected is not None:
                first = redirected.first_tier()
                points = redirected.tier(first) if first else points
        for point in points:
            command, queued = _quiet(
                _command(
                    event.occurred_at,
                    event.incident_id,
                    user_id,
                    point,
                    level,
                    Priority(memory.priority),
                    kind,
                    read_by(text, profile),
                    now,
                ),
                quiet,
            )
            out.commands.append(command)
            out.events.append(queued)
    return out


def remember(memory: IncidentMemory, event: Record, dispatched: Dispatch) -> IncidentMemory:
    """The incident memory after `event` and what was dispatched for it."""
    if isinstance(event, IncidentOpened | IncidentEscalated):
        memory.title, memory.priority, memory.url = event.title, event.priority.value, event.url
        memory.channels = [c.value for c in event.channels] if event.channels else None
        remembered = with_remembered_details(event, memory)
        memory.service, memory.team_name = remembered.service, remembered.team_name
        memory.alert_count, memory.triggered_at = remembered.alert_count, remembered.triggered_at
        memory.dashboard_url = remembered.dashboard_url
        users = memory.levels.setdefault(str(event.escalation_level), [])
        for command in dispatched.commands:
            if command.user_id not in users:
                users.append(command.user_id)
        if memory.status == "resolved":
            memory.status = "open"
    elif isinstance(event, IncidentAcknowledged) and memory.status == "open":
        memory.status = "acknowledged"
    elif isinstance(event, IncidentResolved):
        memory.status = "resolved"
    return memory


def dispatch_escalation(
    command: EscalateTier,
    memory: IncidentMemory,
    profile: UserProfile | None,
    now: datetime,
    *,
    tiers: Mapping[Channel, Tier] = DEFAULT_TIERS,
) -> Dispatch:
    """The user's next tier after a failed one: the command's tier, or the first later tier
    with a usable channel. Nothing when the incident is no longer open or this escalation
    was already sent (a replayed command)."""
    key = f"{command.user_id}|{command.escalation_level}|{command.tier.value}"
    if memory.status != "open" or key in memory.escalations:
        return Dispatch()
    alert = _alert_of(
        memory,
        command.incident_id,
        command.command_id,
        command.occurred_at,
        command.escalation_level,
        command.user_id,
    )
    tier: Tier | None = command.tier
    while tier is not None:
        out = dispatch_alert(alert, {command.user_id: profile}, now, tiers=tiers, tier=tier)
        if out.commands:
            return out
        tier = TIER_ORDER[TIER_ORDER.index(tier) + 1] if tier is not TIER_ORDER[-1] else None
    return Dispatch()


def _alert_of(
    memory: IncidentMemory,
    incident_id: str,
    event_id: str,
    occurred_at: datetime,
    level: int,
    user_id: str,
) -> IncidentOpened:
    """The incident as remembered, addressed to one user: what escalations and repeats send."""
    return IncidentOpened(
        event_id=event_id,
        occurred_at=occurred_at,
        incident_id=incident_id,
        title=memory.title or incident_id,
        priority=Priority(memory.priority),
        escalation_level=level,
        user_ids=[user_id],
        url=memory.url,
        channels=[Channel(c) for c in memory.channels] if memory.channels else None,
        service=memory.service,
        team_name=memory.team_name,
        alert_count=memory.alert_count,
        triggered_at=memory.triggered_at,
        dashboard_url=memory.dashboard_url,
    )


def repeat_key(due: RepeatDue) -> str:
    """How the incident memory remembers that a repeat was sent."""
    return f"{due.user_id}|{due.escalation_level}|{due.tier.value}|repeat={due.repeat}"


def dispatch_repeat(
    due: RepeatDue,
    memory: IncidentMemory,
    profile: UserProfile | None,
    now: datetime,
    *,
    tiers: Mapping[Channel, Tier] = DEFAULT_TIERS,
) -> Dispatch:
    """Repeat number `due.repeat` of the user's last tier, as new notifications (their ids
    carry the repeat number). Nothing when the incident is no longer open or this repeat was
    already sent (a replayed timer)."""
    if memory.status != "open" or repeat_key(due) in memory.escalations:
        return Dispatch()
    alert = _alert_of(
        memory, due.incident_id, due.event_id, due.occurred_at, due.escalation_level, due.user_id
    )
    return dispatch_alert(
        alert, {due.user_id: profile}, now, tiers=tiers, tier=due.tier, repeat=due.repeat
    )


def last_tier(profile: UserProfile | None, channels: list[str] | None = None) -> Tier | None:
    """The last tier in which the user has a usable channel."""
    only = [Channel(c) for c in channels] if channels else None
    reach = reachability(profile, only=only)
    usable = [t for t in TIER_ORDER if reach.tier(t)]
    return usable[-1] if usable else None


def schedule_repeats(
    commands: list[SendCommand],
    last_tiers: Mapping[str, Tier | None],
    now: datetime,
    priorities: tuple[str, ...],
    interval_s: float,
    most: int,
) -> list[RepeatDue]:
    """Repeat-until-acknowledged: alerts of a repeating priority that reached the user's
    last tier are sent again `interval_s` later, up to `most` times."""
    out: dict[str, RepeatDue] = {}
    for c in commands:
        if (
            c.kind is not NotificationKind.ALERT
            or c.priority.value not in priorities
            or c.repeat >= most
            or last_tiers.get(c.user_id) is not c.tier
        ):
            continue
        repeat = c.repeat + 1
        event_id = ids.event_id(
            c.incident_id, c.user_id, c.escalation_level, c.tier.value, "repeat", repeat
        )
        out[event_id] = RepeatDue(
            event_id=event_id,
            occurred_at=now,
            due_at=now + timedelta(seconds=interval_s),
            incident_id=c.incident_id,
            user_id=c.user_id,
            escalation_level=c.escalation_level,
            tier=c.tier,
            repeat=repeat,
        )
    return list(out.values())


class ResendRefusedError(ValueError):
    """A resend that names a notification this incident never had."""


def dispatch_resend(
    request: ResendRequested,
    memory: IncidentMemory,
    profile: UserProfile | None,
    now: datetime,
    *,
    tiers: Mapping[Channel, Tier] = DEFAULT_TIERS,
) -> Dispatch:
    """One more attempt of a notification, asked for by an operator: the same notification
    id, the next attempt number, sent even if the incident is no longer open. An event says
    so when the user can no longer be reached on that channel."""
    nid = ids.notification_id(
        request.incident_id,
        request.escalation_level,
        request.user_id,
        request.channel,
        request.repeat,
        request.kind,
    )
    if nid != request.notification_id:
        raise ResendRefusedError(
            f"notification {request.notification_id} is not {request.kind.value} "
            f"{request.channel.value} of {request.user_id} in incident {request.incident_id}"
        )
    reach = reachability(profile, tiers=tiers)
    point = next(
        (p for t in TIER_ORDER for p in reach.tier(t) if p.channel is request.channel), None
    )
    if point is None:
        reason = f"resend: {request.channel.value.lower()} is no longer usable for this user"
        return Dispatch(
            events=[
                UserUnreachable(
                    event_id=ids.event_id(request.event_id, "unreachable"),
                    occurred_at=now,
                    incident_id=request.incident_id,
                    user_id=request.user_id,
                    escalation_level=request.escalation_level,
                    reason=reason,
                )
            ]
        )
    text = memory.text(request.incident_id, request.escalation_level)
    command, _ = _command(
        now,
        request.incident_id,
        request.user_id,
        point,
        request.escalation_level,
        Priority(memory.priority),
        request.kind,
        read_by(text, profile),
        now,
        request.repeat,
    )
    return Dispatch(
        commands=[
            replace(
                command,
                command_id=ids.command_id(nid, request.attempt),
                attempt=request.attempt,
                requested_by=request.requested_by,
            )
        ]
    )
