"""NOTIFIER_PROVIDERS: each channel's providers in failover order, validated at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifier.settings import KNOWN_PROVIDERS, Settings


def test_by_default_each_channel_has_its_one_provider() -> None:
    settings = Settings()
    assert settings.providers_of("EMAIL") == ("smtp",)
    assert settings.providers_of("SMS") == ("twilio",)
    assert settings.providers_of("WEBHOOK") == ("webhook",)
    assert Settings(email_provider="sendgrid").providers_of("EMAIL") == ("sendgrid",)


def test_reads_ordered_lists_per_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_PROVIDERS", "email=smtp, SendGrid;SMS=twilio;")
    settings = Settings()
    assert settings.providers_of("EMAIL") == ("smtp", "sendgrid")
    assert settings.providers_of("SMS") == ("twilio",)
    assert settings.providers_of("PUSH") == ("fcm",)  # not named: its one provider
    assert settings.masked()["providers"] == "EMAIL=smtp,sendgrid;SMS=twilio"


def test_the_list_wins_over_email_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("NOTIFIER_PROVIDERS", "EMAIL=sendgrid,smtp")
    assert Settings().providers_of("EMAIL") == ("sendgrid", "smtp")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("EMAIL=smtp,mailgun", "unknown EMAIL provider 'mailgun'; known: smtp, sendgrid"),
        ("SMS=sendgrid", "unknown SMS provider 'sendgrid'; known: twilio, vonage"),
        ("FAX=twilio", "unknown channel 'FAX'"),
        ("EMAIL=", "EMAIL names no provider; known: smtp, sendgrid"),
        ("EMAIL=smtp,smtp", "EMAIL names a provider twice"),
        ("smtp,sendgrid", "is not CHANNEL=provider"),
    ],
)
def test_unknown_names_fail_at_start(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("NOTIFIER_PROVIDERS", value)
    with pytest.raises(ValidationError, match="providers") as caught:
        Settings()
    assert message in str(caught.value)


def test_an_unknown_email_provider_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_EMAIL_PROVIDER", "mailgun")
    with pytest.raises(ValidationError, match="known: smtp, sendgrid"):
        Settings()


def test_every_known_provider_can_be_built() -> None:
    from adapters.providers import BUILDERS

    assert {(c, n) for c, names in KNOWN_PROVIDERS.items() for n in names} == {
        (c.value, n) for c, n in BUILDERS
    }


def test_vonage_named_without_its_settings_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_PROVIDERS", "SMS=twilio,vonage")
    monkeypatch.setenv("NOTIFIER_VONAGE_API_KEY", "5a9d0c1e")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert (
        "NOTIFIER_PROVIDERS names vonage for SMS, but NOTIFIER_VONAGE_API_SECRET, "
        "NOTIFIER_VONAGE_FROM are not set"
    ) in str(caught.value)
    monkeypatch.setenv("NOTIFIER_PROVIDERS", "VOICE=vonage")
    monkeypatch.setenv("NOTIFIER_VONAGE_FROM", "+14155550001")
    monkeypatch.setenv("NOTIFIER_VONAGE_APPLICATION_ID", "app-1")
    with pytest.raises(ValidationError, match="NOTIFIER_VONAGE_PRIVATE_KEY_FILE is not set"):
        Settings()


def test_vonage_with_its_settings_is_a_provider_of_sms_and_voice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "PROVIDERS": "SMS=twilio,vonage;VOICE=vonage,twilio",
        "VONAGE_API_KEY": "5a9d0c1e",
        "VONAGE_API_SECRET": "s",
        "VONAGE_FROM": "+14155550001",
        "VONAGE_APPLICATION_ID": "app-1",
        "VONAGE_PRIVATE_KEY_FILE": "/run/secrets/vonage/private.key",
    }.items():
        monkeypatch.setenv(f"NOTIFIER_{name}", value)
    settings = Settings()
    assert settings.providers_of("SMS") == ("twilio", "vonage")
    assert settings.providers_of("VOICE") == ("vonage", "twilio")
    assert settings.masked()["vonage_api_secret"] == "***"


def test_vonage_unnamed_needs_nothing() -> None:
    assert Settings().vonage_api_key == ""
