"""Build each channel's provider from the settings: the one place adapters are chosen."""

from __future__ import annotations

import logging

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from adapters.base import Provider
from adapters.fcm import FcmPush
from adapters.sendgrid import SendGridEmail
from adapters.slack import SlackMessage
from adapters.smtp import SmtpEmail
from adapters.teams import TeamsCard
from adapters.twilio import TwilioSms, TwilioVoice
from adapters.webhook import GenericWebhook
from notifier.contracts.records import Channel
from notifier.settings import Settings

log = logging.getLogger("notifier.providers")


def _client(settings: Settings) -> httpx.AsyncClient:
    # httpx's API over aiohttp's transport (httpx-aiohttp): httpcore spent more CPU per
    # request than everything else in the worker together (py-spy, make bench); one pool per
    # provider, as large as the channel's concurrency
    size = settings.channel_concurrency
    return HttpxAiohttpClient(
        timeout=httpx.Timeout(settings.send_timeout_s),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        headers={"User-Agent": "notifier/0.1"},
    )


def _with_links(email: Provider, settings: Settings) -> Provider:
    from adapters.bridge.store import BridgeStore
    from adapters.email_links import EmailWithLinks
    from projections.database import DatabaseNotConfiguredError, database_url

    try:
        url = database_url(settings)
    except DatabaseNotConfiguredError as exc:
        log.warning("emails without acknowledge links: %s", exc)
        return email
    return EmailWithLinks(email, BridgeStore(url), settings)


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    """One provider per channel, each with its own pooled HTTP client."""
    email: Provider = (
        SendGridEmail(_client(settings), settings)
        if settings.email_provider == "sendgrid"
        else SmtpEmail(settings)
    )
    if settings.callback_base_url:  # a bridge is deployed: alerts carry one-time links
        email = _with_links(email, settings)
    return {
        Channel.EMAIL: email,
        Channel.SMS: TwilioSms(_client(settings), settings),
        Channel.VOICE: TwilioVoice(_client(settings), settings),
        Channel.PUSH: FcmPush(_client(settings), settings),
        Channel.SLACK: SlackMessage(_client(settings), settings),
        Channel.TEAMS: TeamsCard(_client(settings)),
        Channel.WEBHOOK: GenericWebhook(_client(settings), settings),
    }
