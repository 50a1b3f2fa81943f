"""Build each channel's provider from the settings: the one place adapters are chosen."""

from __future__ import annotations

import httpx

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


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    """One provider per channel, sharing one pooled HTTP client."""
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.send_timeout_s),
        limits=httpx.Limits(
            max_connections=4 * settings.channel_concurrency * len(Channel),
            max_keepalive_connections=2 * settings.channel_concurrency,
        ),
        headers={"User-Agent": "notifier/0.1"},
    )
    email: Provider = (
        SendGridEmail(client, settings)
        if settings.email_provider == "sendgrid"
        else SmtpEmail(settings)
    )
    return {
        Channel.EMAIL: email,
        Channel.SMS: TwilioSms(client, settings),
        Channel.VOICE: TwilioVoice(client, settings),
        Channel.PUSH: FcmPush(client, settings),
        Channel.SLACK: SlackMessage(client, settings),
        Channel.TEAMS: TeamsCard(client),
        Channel.WEBHOOK: GenericWebhook(client, settings),
    }
