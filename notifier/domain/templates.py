"""Message text per channel and kind, within each channel's limits."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from notifier.contracts.records import Channel, NotificationKind, Priority
from notifier.domain.sms_reply import SMS_REPLY_ROOM

SMS_SEGMENT = 160  # one GSM-7 segment; longer texts are split and billed per part
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


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


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
    """(title, body) of the message for `channel`."""
    headline = _clip(_headline(kind, text), TITLE)
    who = f" by {text.by}" if text.by else ""
    if kind is NotificationKind.ALERT:
        detail = text.description or ""
        level = f"Escalation level {text.escalation_level}." if text.escalation_level > 1 else ""
    else:
        verb = "acknowledged" if kind is NotificationKind.ACKNOWLEDGED_NOTICE else "resolved"
        detail, level = f"The incident was {verb}{who}. No action needed.", ""
    if channel is Channel.SMS:
        url = f" {text.url}" if text.url else ""
        # an alert keeps room for the "Reply ACK <code>" hint the SMS adapter may add
        hint = SMS_REPLY_ROOM if kind is NotificationKind.ALERT else 0
        room = SMS_SEGMENT - len(gsm_safe(url)) - hint
        return headline, _clip(gsm_safe(headline), max(room, 40)) + gsm_safe(url)
    if channel is Channel.VOICE:
        said = _headline(kind, text).replace("[", "").replace("]", ".")
        spoken = f"This is the incident notifier. {said}."
        if kind is NotificationKind.ALERT:
            spoken += f" {level}" if level else ""
        else:
            spoken += f" {detail}"
        return headline, _clip(spoken, 1000)
    lines = [line for line in (detail, level, text.url or "") if line]
    body = "\n".join(lines) or headline
    if channel is Channel.PUSH:
        return _clip(headline, 100), _clip(body, PUSH_BODY)
    if channel is Channel.SLACK:
        return headline, _clip(body, SLACK_TEXT)
    return headline, body
