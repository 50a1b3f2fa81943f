"""SendGrid v3 Mail Send: JSON with personalizations, bearer auth, 202 + X-Message-Id."""

from __future__ import annotations

from adapters.base import HttpProvider, missing
from adapters.email_body import html_body
from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, SendCommand
from notifier.settings import Settings


class SendGridEmail(HttpProvider):
    """Email through SendGrid; our ids travel as custom_args, echoed in event webhooks."""

    name = "sendgrid"
    channel = Channel.EMAIL
    receipts = True  # status callbacks/events report delivery to the bridge

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings

    def build(self, command: SendCommand) -> HttpCall:
        if self.settings.sendgrid_api_key is None:
            raise missing("NOTIFIER_SENDGRID_API_KEY")
        body_html = html_body(command.body, command.url, command.dashboard_url)
        # custom_args go in the personalization, where SendGrid's API types them as an object
        # (the top-level field is a string); they come back on every event of the message
        custom_args = {
            "notification_id": command.notification_id,
            "incident_id": command.incident_id,
            "user_id": command.user_id,
        }
        payload = {
            "personalizations": [{"to": [{"email": command.address}], "custom_args": custom_args}],
            "from": {"email": self.settings.email_from},
            "subject": command.title,
            "content": [
                {"type": "text/plain", "value": command.body},
                {"type": "text/html", "value": body_html},
            ],
        }
        token = self.settings.sendgrid_api_key.get_secret_value()
        return HttpCall(
            "POST",
            f"{self.settings.sendgrid_base_url.rstrip('/')}/v3/mail/send",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
        )

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        if response.status_code == 202:
            return response.headers.get("x-message-id") or command.notification_id
        try:
            errors = response.json().get("errors", [])
            detail = "; ".join(str(e.get("message", "")) for e in errors)
        except ValueError:
            detail = response.text
        raise self.http_error(response, None, detail)
