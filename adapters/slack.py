"""Slack chat.postMessage with Block Kit and Acknowledge / Resolve buttons."""

from __future__ import annotations

from typing import Any

from adapters.base import HttpProvider, ProviderError, missing
from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, NotificationKind, SendCommand
from notifier.domain.failures import Failure, FailureKind
from notifier.settings import Settings


class SlackMessage(HttpProvider):
    """A direct message to the user's Slack member id."""

    name = "slack"
    channel = Channel.SLACK

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings

    @staticmethod
    def blocks(command: SendCommand) -> list[dict[str, Any]]:
        """Block Kit layout: headline, text, the dashboard link, and the action buttons for
        alerts."""
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": command.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": command.body[:3000]}},
        ]
        if command.dashboard_url:
            # a link, not a URL button: a button press is also posted to our interactivity
            # endpoint, which takes only Acknowledge and Resolve
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": f"<{command.dashboard_url}|Open the dashboard>"}
                    ],
                }
            )
        if command.kind is NotificationKind.ALERT:
            value = f"{command.incident_id}|{command.notification_id}|{command.user_id}"
            blocks.append(
                {
                    "type": "actions",
                    "block_id": "incident_actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "acknowledge",
                            "style": "primary",
                            "text": {"type": "plain_text", "text": "Acknowledge"},
                            "value": value,
                        },
                        {
                            "type": "button",
                            "action_id": "resolve",
                            "text": {"type": "plain_text", "text": "Resolve"},
                            "value": value,
                        },
                    ],
                }
            )
        return blocks

    def build(self, command: SendCommand) -> HttpCall:
        if self.settings.slack_bot_token is None:
            raise missing("NOTIFIER_SLACK_BOT_TOKEN")
        token = self.settings.slack_bot_token.get_secret_value()
        payload = {
            "channel": command.address,
            "text": command.title,
            "blocks": self.blocks(command),
            "unfurl_links": False,
        }
        return HttpCall(
            "POST",
            f"{self.settings.slack_base_url.rstrip('/')}/chat.postMessage",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
        )

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        if response.status_code != 200:
            raise self.http_error(response, None, response.text)
        body = response.json()
        if body.get("ok"):
            return f"{body.get('channel', '')}:{body['ts']}"
        code = str(body.get("error", "unknown_error"))
        raise ProviderError(Failure(FailureKind.PROVIDER, 200, code), f"slack: {code}")
