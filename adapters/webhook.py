"""Generic HTTP webhook: JSON body, Bearer or API-key auth, and an HMAC-SHA256 signature
header over timestamp + body that receivers verify."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from adapters.base import HttpProvider, missing
from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, SendCommand
from notifier.settings import Settings

SIGNATURE_HEADER = "X-Notifier-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`, as receivers check it."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class GenericWebhook(HttpProvider):
    """A JSON POST (or the endpoint's method) to the user's webhook URL."""

    name = "webhook"
    channel = Channel.WEBHOOK

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings

    def build(self, command: SendCommand) -> HttpCall:
        params = command.address_params
        body = json.dumps(
            {
                "notification_id": command.notification_id,
                "incident_id": command.incident_id,
                "user_id": command.user_id,
                "kind": command.kind.value,
                "priority": command.priority.value,
                "escalation_level": command.escalation_level,
                "title": command.title,
                "body": command.body,
                "url": command.url,
                "attempt": command.attempt,
                # the details as data (each null when the incident did not say); the time
                # in RFC 3339 for machines, the body shows it for people
                "service": command.service,
                "team_name": command.team_name,
                "alert_count": command.alert_count,
                "triggered_at": command.triggered_at.isoformat() if command.triggered_at else None,
                "dashboard_url": command.dashboard_url,
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json"}
        auth = params.get("auth", "NONE")
        if auth != "NONE":
            ref = params.get("secret_ref", "")
            secret = self.settings.secret(ref) if ref else None
            if secret is None:
                raise missing(f"NOTIFIER_SECRET_{ref.upper() or '<REF>'}")
            if auth == "BEARER":
                headers["Authorization"] = f"Bearer {secret}"
            else:
                headers[params.get("api_key_header") or "X-API-Key"] = secret
        signing = params.get("signing_secret_ref")
        key = (
            self.settings.secret(signing)
            if signing
            else (
                self.settings.webhook_signing_secret.get_secret_value()
                if self.settings.webhook_signing_secret
                else None
            )
        )
        if key:
            headers[SIGNATURE_HEADER] = sign(key, int(time.time()), body)
        return HttpCall(
            params.get("method", "POST"), command.address, content=body, headers=headers
        )

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        if 200 <= response.status_code < 300:
            return response.headers.get("x-request-id") or f"webhook-{command.command_id}"
        raise self.http_error(response, None, response.text)
