"""One-time acknowledge and resolve links in alert emails, issued as the email is sent.

The tokens are random; only their SHA-256 is stored (by the bridge's store), and each
works once, for one action, until it expires. When the store cannot be reached the email
goes out without links: an alert without buttons is better than no alert.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from adapters.base import Provider
from adapters.bridge.store import BridgeStore
from notifier.contracts.records import NotificationKind, SendCommand
from notifier.settings import Settings

log = logging.getLogger("notifier.email_links")
ISSUE_TIMEOUT_S = 2.0


class EmailWithLinks:
    """Wraps the email provider: alerts get links to the bridge before they are sent."""

    def __init__(self, inner: Provider, store: BridgeStore, settings: Settings) -> None:
        self.inner = inner
        self.store = store
        self.settings = settings
        self.name = inner.name
        self.channel = inner.channel
        self.receipts: bool = getattr(inner, "receipts", False)

    async def with_links(self, command: SendCommand) -> SendCommand:
        """`command` with the links appended to its text, or unchanged if none were issued."""
        if command.kind is not NotificationKind.ALERT:
            return command
        try:
            tokens = await asyncio.wait_for(
                self.store.issue(
                    command.incident_id,
                    command.notification_id,
                    command.user_id,
                    self.settings.magic_link_ttl_s,
                ),
                ISSUE_TIMEOUT_S,
            )
        except Exception as exc:  # the store is down or slow: send without links
            log.warning(
                "email sent without links: %s",
                exc,
                extra={
                    "incident_id": command.incident_id,
                    "notification_id": command.notification_id,
                },
            )
            return command
        base = self.settings.callback_base_url.rstrip("/")
        links = (
            f"Acknowledge: {base}/links/{tokens['acknowledge']}\n"
            f"Resolve: {base}/links/{tokens['resolve']}"
        )
        return dataclasses.replace(command, body=f"{command.body}\n\n{links}")

    async def send(self, command: SendCommand) -> str:
        """Issue the links, then send through the wrapped provider."""
        return await self.inner.send(await self.with_links(command))

    async def close(self) -> None:
        """Close the provider and the store."""
        await self.inner.close()
        await self.store.close()
