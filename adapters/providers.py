"""Build each channel's providers from the settings: the one place adapters are chosen."""

from __future__ import annotations

import logging
from collections.abc import Callable

from adapters.base import Provider
from adapters.fcm import FcmPush
from adapters.http import HttpClient
from adapters.sendgrid import SendGridEmail
from adapters.slack import SlackMessage
from adapters.smtp import SmtpEmail
from adapters.teams import TeamsCard
from adapters.twilio import TwilioSms, TwilioVoice
from adapters.vonage import VonageSms, VonageVoice
from adapters.webhook import GenericWebhook
from notifier.contracts.records import Channel
from notifier.settings import Settings

log = logging.getLogger("notifier.providers")


def _client(settings: Settings, channel: Channel) -> HttpClient:
    # one pool per provider, as large as the channel's concurrency, with the channel's timeout
    size = settings.channel_concurrency
    timeout = settings.send_timeout(channel.value)
    return HttpClient(timeout, size, {"User-Agent": "notifier/0.1"})


def _with_links(provider: Provider, settings: Settings) -> Provider:
    from adapters.bridge.store import BridgeStore
    from adapters.email_links import EmailWithLinks, TeamsWithLinks
    from projections.database import DatabaseNotConfiguredError, database_url

    try:
        url = database_url(settings)
    except DatabaseNotConfiguredError as exc:
        log.warning("%s without acknowledge links: %s", provider.channel.value.lower(), exc)
        return provider
    wrapper = EmailWithLinks if provider.channel is Channel.EMAIL else TeamsWithLinks
    return wrapper(provider, BridgeStore(url), settings)


Builder = Callable[[Settings], Provider]

# Every provider by (channel, name); the names are those notifier.settings.KNOWN_PROVIDERS
# lists, the ones NOTIFIER_PROVIDERS may name.
BUILDERS: dict[tuple[Channel, str], Builder] = {
    (Channel.EMAIL, "smtp"): SmtpEmail,
    (Channel.EMAIL, "sendgrid"): lambda s: SendGridEmail(_client(s, Channel.EMAIL), s),
    (Channel.SMS, "twilio"): lambda s: TwilioSms(_client(s, Channel.SMS), s),
    (Channel.VOICE, "twilio"): lambda s: TwilioVoice(_client(s, Channel.VOICE), s),
    (Channel.SMS, "vonage"): lambda s: VonageSms(_client(s, Channel.SMS), s),
    (Channel.VOICE, "vonage"): lambda s: VonageVoice(_client(s, Channel.VOICE), s),
    (Channel.PUSH, "fcm"): lambda s: FcmPush(_client(s, Channel.PUSH), s),
    (Channel.SLACK, "slack"): lambda s: SlackMessage(_client(s, Channel.SLACK), s),
    (Channel.TEAMS, "teams"): lambda s: TeamsCard(_client(s, Channel.TEAMS)),
    (Channel.WEBHOOK, "webhook"): lambda s: GenericWebhook(_client(s, Channel.WEBHOOK), s),
}


def build_provider(channel: Channel, name: str, settings: Settings) -> Provider:
    """One provider of `channel`, with its own pooled HTTP client; emails and Teams cards
    get acknowledge links when a bridge is deployed."""
    provider = BUILDERS[(channel, name)](settings)
    if channel in (Channel.EMAIL, Channel.TEAMS) and settings.callback_base_url:
        provider = _with_links(provider, settings)  # alerts carry one-time links
    return provider


def build_channel_providers(settings: Settings) -> dict[Channel, list[Provider]]:
    """Each channel's providers in failover order (NOTIFIER_PROVIDERS)."""
    return {
        channel: [
            build_provider(channel, n, settings) for n in settings.providers_of(channel.value)
        ]
        for channel in Channel
    }


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    """The first provider of each channel, each with its own pooled HTTP client."""
    return {
        channel: build_provider(channel, settings.providers_of(channel.value)[0], settings)
        for channel in Channel
    }
