"""Microsoft Teams incoming webhook with an Adaptive Card."""

from __future__ import annotations

import hashlib
from typing import Any

from adapters.base import HttpProvider
from adapters.http import HttpCall, HttpResponse
from notifier.contracts.records import Channel, SendCommand


class TeamsCard(HttpProvider):
    """An Adaptive Card posted to the user's Teams webhook."""

    name = "teams"
    channel = Channel.TEAMS

    @staticmethod
    def card(command: SendCommand) -> dict[str, Any]:
        """The message envelope Teams webhooks take, holding one Adaptive Card 1.4."""
        body: list[dict[str, Any]] = [
            {
                "type": "TextBlock",
                "text": command.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": command.body, "wrap": True},
        ]
        actions: list[dict[str, Any]] = []
        acknowledge = command.address_params.get("acknowledge_url")
        if acknowledge:  # a one-time link to the bridge (adapters.email_links)
            actions.append({"type": "Action.OpenUrl", "title": "Acknowledge", "url": acknowledge})
        actions += [
            {"type": "Action.OpenUrl", "title": title, "url": url}
            for title, url in (
                ("Open incident", command.url),
                ("Open dashboard", command.dashboard_url),
            )
            if url
        ]
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": body,
                        "actions": actions,
                    },
                }
            ],
        }

    def build(self, command: SendCommand) -> HttpCall:
        return HttpCall("POST", command.address, json=self.card(command))

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        if response.status_code in (200, 202):
            # Teams webhooks return no id: derive a stable one from ours
            return "teams-" + hashlib.sha256(command.notification_id.encode()).hexdigest()[:20]
        raise self.http_error(response, None, response.text)
