"""One-time links to the bridge, issued as an alert is sent: acknowledge and resolve links in
alert emails, an Acknowledge button (a link) on Teams cards.

The tokens are random; only their SHA-256 is stored (by the bridge's store), and each
works once, for one action, until it expires. When the store cannot be reached the message
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
# where a Teams card finds its acknowledge link (address_params is never published)
ACKNOWLEDGE_URL = "acknowledge_url"


class _WithLinks:
    """Wraps a provider: alerts get one-time links to the bridge before they are sent."""

    actions: tuple[str, ...] = ("acknowledge", "resolve")

    def __init__(self, inner: Provider, store: BridgeStore, settings: Settings) -> None:
        self.inner = inner
        self.store = store
        self.settings = settings
        self.name = inner.name
        self.channel = inner.channel
        self.receipts: bool = getattr(inner, "receipts", False)

    async def links(self, command: SendCommand) -> dict[str, str] | None:
        """{action: link URL} for an alert, None for a notice or when the store failed."""
        if command.kind is not NotificationKind.ALERT:
            return None
        try:
            tokens = await asyncio.wait_for(
                self.store.issue(
                    command.incident_id,
                    command.notification_id,
                    command.user_id,
                    self.settings.magic_link_ttl_s,
                    actions=self.actions,
                    channel=self.channel.value,
                ),
                ISSUE_TIMEOUT_S,
            )
        except Exception as exc:  # the store is down or slow: send without links
            log.warning(
                "%s sent without links: %s",
                self.channel.value.lower(),
                exc,
                extra={
                    "incident_id": command.incident_id,
                    "notification_id": command.notification_id,
                },
            )
            return None
        base = self.settings.callback_base_url.rstrip("/")
        return {action: f"{base}/links/{token}" for action, token in tokens.items()}

    async def with_links(self, command: SendCommand) -> SendCommand:
        """`command` as it is sent: with its links, or unchanged if none were issued."""
        raise NotImplementedError

    async def send(self, command: SendCommand) -> str:
        """Issue the links, then send through the wrapped provider."""
        return await self.inner.send(await self.with_links(command))

    async def close(self) -> None:
        """Close the provider and the store."""
        await self.inner.close()
        await self.store.close()


class EmailWithLinks(_WithLinks):
    """Alert emails end with an acknowledge and a resolve link."""

    async def with_links(self, command: SendCommand) -> SendCommand:
        """`command` with the links appended to its text, or unchanged if none were issued."""
        links = await self.links(command)
        if links is None:
            return command
        text = f"Acknowledge: {links['acknowledge']}\nResolve: {links['resolve']}"
        return dataclasses.replace(command, body=f"{command.body}\n\n{text}")


class TeamsWithLinks(_WithLinks):
    """Alert cards in Teams get an Acknowledge button: a one-time link (an incoming webhook
    cannot receive button presses, so the button opens the bridge's confirmation page)."""

    actions = ("acknowledge",)

    async def with_links(self, command: SendCommand) -> SendCommand:
        """`command` with the acknowledge link for the card, or unchanged if none."""
        links = await self.links(command)
        if links is None:
            return command
        params = {**command.address_params, ACKNOWLEDGE_URL: links["acknowledge"]}
        return dataclasses.replace(command, address_params=params)
