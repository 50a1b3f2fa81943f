"""What each verified inbound request means: provider status callbacks become
ProviderCallback records, button presses and key presses become acknowledgements.

Pure functions of the request's data; a request that cannot be understood raises
MalformedRequestError (the bridge answers 400, the raw request is already archived). Event ids
are derived from the provider's own ids, so a callback delivered twice is one event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    IncidentAcknowledged,
    IncidentResolved,
    ProviderCallback,
)
from notifier.domain import ids

# Twilio's message and call statuses, normalised. Calls: "completed" means answered.
TWILIO_STATUS: dict[str, CallbackStatus] = {
    "accepted": CallbackStatus.SENT,
    "scheduled": CallbackStatus.SENT,
    "queued": CallbackStatus.SENT,
    "sending": CallbackStatus.SENT,
    "sent": CallbackStatus.SENT,
    "initiated": CallbackStatus.SENT,
    "ringing": CallbackStatus.SENT,
    "in-progress": CallbackStatus.SENT,
    "delivered": CallbackStatus.DELIVERED,
    "read": CallbackStatus.DELIVERED,
    "completed": CallbackStatus.DELIVERED,
    "undelivered": CallbackStatus.FAILED,
    "failed": CallbackStatus.FAILED,
    "canceled": CallbackStatus.FAILED,
    "busy": CallbackStatus.FAILED,
    "no-answer": CallbackStatus.FAILED,
}
# SendGrid event webhook: engagement events (open, click, ...) say nothing about delivery
SENDGRID_STATUS: dict[str, CallbackStatus] = {
    "processed": CallbackStatus.SENT,
    "delivered": CallbackStatus.DELIVERED,
    "deferred": CallbackStatus.DEFERRED,
    "bounce": CallbackStatus.FAILED,
    "dropped": CallbackStatus.FAILED,
}
RECEIPT_STATUS: dict[str, CallbackStatus] = {
    "delivered": CallbackStatus.DELIVERED,
    "failed": CallbackStatus.FAILED,
}
ACK_DIGIT = "1"


class MalformedRequestError(ValueError):
    """A verified request whose content is not what its provider sends."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _required(fields: Mapping[str, str], name: str, where: str) -> str:
    value = fields.get(name)
    if not value:
        raise MalformedRequestError(f"{where}: {name} is missing")
    return value


def _channel(value: str, where: str) -> Channel:
    try:
        return Channel(value.upper())
    except ValueError as exc:
        raise MalformedRequestError(f"{where}: unknown channel {value!r}") from exc


def twilio_status(
    query: Mapping[str, str], form: Mapping[str, str], received_at: datetime
) -> ProviderCallback:
    """A Twilio message or call status callback; our ids are in its URL's query."""
    where = "twilio status callback"
    is_call = "CallSid" in form
    sid = _required(form, "CallSid" if is_call else "MessageSid", where)
    raw = _required(form, "CallStatus" if is_call else "MessageStatus", where).lower()
    status = TWILIO_STATUS.get(raw)
    if status is None:
        raise MalformedRequestError(f"{where}: unknown status {raw!r}")
    error = None
    if form.get("ErrorCode"):
        error = f"twilio error {form['ErrorCode']}" + (
            f": {form['ErrorMessage']}" if form.get("ErrorMessage") else ""
        )
    elif status is CallbackStatus.FAILED:
        error = f"twilio: {raw}"
    default_channel = "VOICE" if is_call else "SMS"
    return ProviderCallback(
        event_id=ids.event_id("twilio", sid, raw),
        occurred_at=received_at,  # Twilio's message callbacks carry no timestamp
        received_at=received_at,
        incident_id=_required(query, "i", where),
        notification_id=_required(query, "n", where),
        channel=_channel(query.get("c") or default_channel, where),
        provider="twilio",
        provider_message_id=sid,
        status=status,
        raw_status=raw,
        error=error,
        user_id=query.get("u") or None,
    )


def twilio_gather(
    query: Mapping[str, str], form: Mapping[str, str], received_at: datetime
) -> IncidentAcknowledged | None:
    """The key pressed during a voice call: 1 acknowledges, anything else does nothing."""
    where = "twilio gather"
    call = _required(form, "CallSid", where)
    incident = _required(query, "i", where)
    if form.get("Digits", "") != ACK_DIGIT:
        return None
    return IncidentAcknowledged(
        event_id=ids.event_id("twilio-gather", call, ACK_DIGIT),
        occurred_at=received_at,
        incident_id=incident,
        by_user_id=query.get("u") or None,
        via="voice",
        note=f"pressed {ACK_DIGIT} on call {call}",
    )


def _json(body: bytes, where: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(f"{where}: body is not JSON ({exc})") from exc


def sendgrid_events(body: bytes, received_at: datetime) -> list[ProviderCallback]:
    """SendGrid's event webhook: a JSON array; events without our ids are not ours."""
    where = "sendgrid events"
    events = _json(body, where)
    if not isinstance(events, list):
        raise MalformedRequestError(f"{where}: expected a JSON array")
    out: list[ProviderCallback] = []
    for event in events:
        if not isinstance(event, dict):
            raise MalformedRequestError(f"{where}: expected objects in the array")
        raw = str(event.get("event", ""))
        status = SENDGRID_STATUS.get(raw)
        notification, incident = event.get("notification_id"), event.get("incident_id")
        if status is None or not notification or not incident:
            continue
        try:
            occurred = datetime.fromtimestamp(int(event["timestamp"]), UTC)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedRequestError(f"{where}: event without a unix timestamp") from exc
        message = str(event.get("sg_message_id", "")).split(".", 1)[0] or None
        error = event.get("reason") or event.get("response")
        out.append(
            ProviderCallback(
                event_id=ids.event_id(
                    "sendgrid", event.get("sg_event_id") or f"{message}|{raw}|{occurred}"
                ),
                occurred_at=occurred,
                received_at=received_at,
                incident_id=str(incident),
                notification_id=str(notification),
                channel=Channel.EMAIL,
                provider="sendgrid",
                provider_message_id=message,
                status=status,
                raw_status=raw,
                error=str(error)[:500] if error else None,
                user_id=str(event["user_id"]) if event.get("user_id") else None,
            )
        )
    return out


def slack_action(
    form: Mapping[str, str], received_at: datetime
) -> IncidentAcknowledged | IncidentResolved:
    """A press of Acknowledge or Resolve on one of our Slack messages."""
    where = "slack action"
    payload = _json(_required(form, "payload", where).encode(), where)
    actions = payload.get("actions") if isinstance(payload, dict) else None
    if not actions or not isinstance(actions[0], dict):
        raise MalformedRequestError(f"{where}: no actions in the payload")
    action = actions[0]
    kind = action.get("action_id")
    parts = str(action.get("value", "")).split("|")
    if kind not in ("acknowledge", "resolve") or len(parts) < 2 or not parts[0]:
        raise MalformedRequestError(f"{where}: not one of our buttons ({kind!r})")
    incident, user = parts[0], (parts[2] if len(parts) > 2 else None)
    member = (payload.get("user") or {}).get("id", "")
    fields: dict[str, Any] = {
        "event_id": ids.event_id(
            "slack", kind, incident, action.get("action_ts") or payload.get("trigger_id")
        ),
        "occurred_at": received_at,
        "incident_id": incident,
        "by_user_id": user or None,
        "via": "slack",
        "note": f"slack member {member}" if member else None,
    }
    return IncidentAcknowledged(**fields) if kind == "acknowledge" else IncidentResolved(**fields)


def webhook_receipt(body: bytes, received_at: datetime) -> ProviderCallback:
    """A delivery receipt from a generic webhook receiver, in our documented JSON."""
    where = "webhook receipt"
    data = _json(body, where)
    if not isinstance(data, dict):
        raise MalformedRequestError(f"{where}: expected a JSON object")
    fields = {k: str(v) for k, v in data.items() if v is not None}
    raw = _required(fields, "status", where).lower()
    status = RECEIPT_STATUS.get(raw)
    if status is None:
        raise MalformedRequestError(f"{where}: status must be delivered or failed, not {raw!r}")
    occurred = received_at
    if "occurred_at" in data:
        try:
            occurred = datetime.fromisoformat(str(data["occurred_at"]))
        except ValueError as exc:
            raise MalformedRequestError(f"{where}: occurred_at is not ISO 8601") from exc
        if occurred.tzinfo is None:
            raise MalformedRequestError(f"{where}: occurred_at needs a time zone")
    notification = _required(fields, "notification_id", where)
    return ProviderCallback(
        event_id=ids.event_id("webhook-receipt", notification, raw),
        occurred_at=occurred,
        received_at=received_at,
        incident_id=_required(fields, "incident_id", where),
        notification_id=notification,
        # a webhook receiver can only speak for webhook notifications, whatever it claims
        channel=Channel.WEBHOOK,
        provider="webhook",
        provider_message_id=fields.get("message_id"),
        status=status,
        raw_status=raw,
        error=fields.get("error"),
        user_id=fields.get("user_id"),
    )
