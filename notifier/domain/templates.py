"""Message text per channel and kind, within each channel's limits."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier.contracts.records import Channel, NotificationKind, Priority
from notifier.domain.local_time import format_local
from notifier.domain.sms_reply import SMS_REPLY_ROOM

SMS_SEGMENT = 160  # one GSM-7 segment; longer texts are split and billed per part
SMS_PART = 153  # a GSM-7 segment of a split text (the rest carries the joining header)
SMS_HEADLINE = 40  # the least of the headline an SMS keeps
PUSH_BODY = 240
SLACK_TEXT = 3000
TITLE = 200


@dataclass(frozen=True)
class IncidentText:
    """What a message says about an incident."""

    title: str
    priority: Priority
    escalation_level: int
    description: str | None = None
    url: str | None = None
    by: str | None = None
    service: str | None = None
    team_name: str | None = None
    alert_count: int | None = None
    triggered_at: datetime | None = None
    dashboard_url: str | None = None
    time_zone: str = "UTC"  # the reader's: times are shown on their wall clock


# the incident's details, named alike on the incident events, the incident memory, this
# text and SendCommand
DETAILS = ("service", "team_name", "alert_count", "triggered_at", "dashboard_url")


def details_of(source: object) -> dict[str, Any]:
    """The incident details `source` carries, by name (to pass on as keyword arguments)."""
    return {name: getattr(source, name) for name in DETAILS}


def shown_time(at: datetime, time_zone: str = "UTC") -> str:
    """A time as every message shows it: minutes, on the reader's wall clock, with the zone's
    abbreviation (the one place that formats it)."""
    return format_local(at, time_zone)


def _count(text: IncidentText) -> int | None:
    # a negative count is nonsense from the incident tool: not shown rather than refused
    return text.alert_count if text.alert_count is not None and text.alert_count >= 0 else None


def _alerts(count: int) -> str:
    return f"{count} alert{'' if count == 1 else 's'}"


def facts(text: IncidentText) -> list[tuple[str, str]]:
    """The incident's details that are known, as (label, value), in the order shown."""
    out: list[tuple[str, str]] = []
    if text.service:
        out.append(("Service", text.service))
    if text.team_name:
        out.append(("Team", text.team_name))
    if (count := _count(text)) is not None:
        out.append(("Alerts", str(count)))
    if text.triggered_at is not None:
        out.append(("Triggered", shown_time(text.triggered_at, text.time_zone)))
    return out


def _facts_line(text: IncidentText) -> str:
    return " | ".join(f"{label}: {value}" for label, value in facts(text))


def _short_facts(text: IncidentText) -> str:
    # an SMS is billed per 160 characters: "checkout-api (Payments), 3 alerts, triggered ..."
    who = text.service or ""
    if text.team_name:
        who = f"{who} ({text.team_name})" if who else text.team_name
    parts = [who] if who else []
    if (count := _count(text)) is not None:
        parts.append(_alerts(count))
    if text.triggered_at is not None:
        parts.append(f"triggered {shown_time(text.triggered_at, text.time_zone)}")
    return ", ".join(parts)


def _spoken_facts(text: IncidentText) -> str:
    said = []
    if text.service:
        said.append(f"Service {text.service}.")
    if text.team_name:
        said.append(f"Team {text.team_name}.")
    if (count := _count(text)) is not None:
        said.append(f"{_alerts(count)}.")
    if text.triggered_at is not None:
        said.append(f"Triggered at {shown_time(text.triggered_at, text.time_zone)}.")
    return " ".join(said)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# GSM-7's extension table: each of these takes two septets of a segment, not one
GSM_EXTENSION = frozenset("^{}\\[~]|€")


def septets(text: str) -> int:
    """The length of a GSM-7 text as a segment counts it (extension characters count two)."""
    return len(text) + sum(1 for c in text if c in GSM_EXTENSION)


def gsm_safe(text: str) -> str:
    """Text reduced to ASCII, so an SMS stays in GSM-7 (160 characters a segment, not 70)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode().replace("`", "'")


def _headline(kind: NotificationKind, text: IncidentText) -> str:
    if kind is NotificationKind.ACKNOWLEDGED_NOTICE:
        return f"Acknowledged: {text.title}"
    if kind is NotificationKind.RESOLVED_NOTICE:
        return f"Resolved: {text.title}"
    return f"[{text.priority.value}] {text.title}"


def render(channel: Channel, kind: NotificationKind, text: IncidentText) -> tuple[str, str]:
    """(title, body) of the message for `channel`. Alerts show the incident's known details
    (service, team, alert count, trigger time); every kind keeps the incident and dashboard
    links, except a call, which cannot show a link."""
    headline = _clip(_headline(kind, text), TITLE)
    who = f" by {text.by}" if text.by else ""
    alert = kind is NotificationKind.ALERT
    if alert:
        detail = text.description or ""
        level = f"Escalation level {text.escalation_level}." if text.escalation_level > 1 else ""
    else:
        verb = "acknowledged" if kind is NotificationKind.ACKNOWLEDGED_NOTICE else "resolved"
        detail, level = f"The incident was {verb}{who}. No action needed.", ""
    known = _facts_line(text) if alert else ""
    dashboard = f"Dashboard: {text.dashboard_url}" if text.dashboard_url else ""
    if channel is Channel.SMS:
        # the details and links are kept whole and the headline gives way: to one segment
        # when they leave it room enough, else to two; an alert also keeps room for the
        # "Reply ACK <code>" hint the SMS adapter may add
        short = _short_facts(text) if alert else ""
        tail = "".join(f" {part}" for part in (short, text.url, text.dashboard_url) if part)
        tail = gsm_safe(tail)
        hint = SMS_REPLY_ROOM if kind is NotificationKind.ALERT else 0
        shown = gsm_safe(headline)
        # counted in septets: the priority tag's brackets take two each
        wide = septets(shown) - len(shown)
        room = SMS_SEGMENT - septets(tail) - hint - wide
        if room < SMS_HEADLINE:
            room = 2 * SMS_PART - septets(tail) - hint - wide
        return headline, _clip(shown, max(room, SMS_HEADLINE)) + tail
    if channel is Channel.VOICE:
        said = _headline(kind, text).replace("[", "").replace("]", ".")
        spoken = f"This is the incident notifier. {said}."
        if alert:
            spoken += "".join(f" {part}" for part in (_spoken_facts(text), level) if part)
        else:
            spoken += f" {detail}"
        return headline, _clip(spoken, 1000)
    lines = [line for line in (known, detail, level, text.url or "", dashboard) if line]
    body = "\n".join(lines) or headline
    if channel is Channel.PUSH:
        return _clip(headline, 100), _clip(body, PUSH_BODY)
    if channel is Channel.SLACK:
        return headline, _clip(body, SLACK_TEXT)
    return headline, body
