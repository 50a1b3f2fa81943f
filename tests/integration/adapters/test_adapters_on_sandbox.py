"""Every adapter sends real bytes over a socket to the sandbox, which validates them the way
the provider does; every failure mode maps to its category."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from adapters.base import Provider, ProviderError
from adapters.providers import build_providers
from notifier.contracts.records import (
    Channel,
    FailureCategory,
    NotificationKind,
    Priority,
    SendCommand,
)
from notifier.domain.templates import IncidentText, render
from notifier.settings import Settings
from tests.samples import sample

pytestmark = pytest.mark.integration
T, P, C = FailureCategory.TRANSIENT, FailureCategory.PERMANENT, FailureCategory.CONFIGURATION

ADDRESSES = {
    Channel.EMAIL: "alice@example.com",
    Channel.SMS: "+14155550101",
    Channel.VOICE: "+14155550101",
    Channel.PUSH: "fcm-token-1",
    Channel.SLACK: "U0ALICE",
    Channel.WEBHOOK: "{sandbox}/hooks/alice",
    Channel.TEAMS: "{sandbox}/teams/webhook/alice",
}
PROVIDER_OF = {
    Channel.EMAIL: "smtp",
    Channel.SMS: "twilio",
    Channel.VOICE: "twilio",
    Channel.PUSH: "fcm",
    Channel.SLACK: "slack",
    Channel.TEAMS: "teams",
    Channel.WEBHOOK: "webhook",
}


def settings_for(sandbox: dict[str, str], **extra: Any) -> Settings:
    values: dict[str, Any] = {
        k.removeprefix("NOTIFIER_").lower(): v
        for k, v in sandbox.items()
        if k.startswith("NOTIFIER_")
    }
    values.update(send_timeout_s=2.0, callback_base_url="http://127.0.0.1:9/bridge")
    values.update(extra)
    return Settings.model_validate(values)


def command(channel: Channel, sandbox: dict[str, str], **overrides: Any) -> SendCommand:
    address = ADDRESSES[channel].format(sandbox=sandbox["SANDBOX_URL"])
    base = {
        "channel": channel,
        "address": address,
        "kind": NotificationKind.ALERT,
        "title": "[CRITICAL] db down",
        "body": "Primary database unreachable.",
        "address_params": {"method": "POST", "auth": "NONE"},
        "provider": None,
        "url": "https://inc.example.com/1",
    }
    base.update(overrides)
    return sample(SendCommand, **base)


@pytest.fixture
async def control(sandbox: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox["SANDBOX_URL"]) as client:
        await client.delete("/_sandbox/requests")
        yield client
        await client.delete("/_sandbox/requests")


@pytest.fixture
async def providers(sandbox: dict[str, str]) -> AsyncIterator[dict[Channel, Provider]]:
    built = build_providers(settings_for(sandbox))
    yield built
    for provider in built.values():
        await provider.close()


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value.lower())
async def test_each_adapter_passes_the_providers_validation(
    channel: Channel,
    sandbox: dict[str, str],
    providers: dict[Channel, Provider],
    control: httpx.AsyncClient,
) -> None:
    cmd = command(channel, sandbox)
    message_id = await providers[channel].send(cmd)
    assert message_id
    recorded = (
        await control.get("/_sandbox/requests", params={"provider": PROVIDER_OF[channel]})
    ).json()
    assert len(recorded) == 1
    assert recorded[0]["status"] in (200, 201, 202, 250)
    if channel not in (Channel.TEAMS, Channel.WEBHOOK):
        assert recorded[0]["message_id"] == message_id


async def test_wire_details(
    sandbox: dict[str, str], providers: dict[Channel, Provider], control: httpx.AsyncClient
) -> None:
    """Twilio carries our ids in StatusCallback; Slack has both buttons; email is multipart;
    the generic webhook is signed and the sandbox checked the signature."""
    sms = command(Channel.SMS, sandbox)
    await providers[Channel.SMS].send(sms)
    await providers[Channel.SLACK].send(command(Channel.SLACK, sandbox))
    await providers[Channel.EMAIL].send(command(Channel.EMAIL, sandbox))
    await providers[Channel.WEBHOOK].send(command(Channel.WEBHOOK, sandbox))
    await providers[Channel.VOICE].send(command(Channel.VOICE, sandbox))
    seen = {
        r["provider"] + ("-call" if str(r["message_id"]).startswith("CA") else ""): r
        for r in (await control.get("/_sandbox/requests")).json()
    }
    assert seen["twilio"]["notification_id"] == sms.notification_id
    assert "/twilio/status?" in seen["twilio"]["summary"]["status_callback"]
    assert seen["slack"]["summary"]["buttons"] == ["acknowledge", "resolve"]
    assert seen["smtp"]["summary"]["parts"] == ["multipart/alternative", "text/plain", "text/html"]
    assert seen["webhook"]["summary"]["signed"] is True
    assert "Press 1 to acknowledge" in seen["twilio-call"]["summary"]["twiml"]


@pytest.mark.parametrize(
    ("channel", "overrides", "category", "reason"),
    [
        (Channel.SMS, {"address": "+1555"}, P, "21211"),
        (Channel.PUSH, {"address": "stale-token"}, P, "UNREGISTERED"),
        (Channel.SLACK, {"address": "UNKNOWN1"}, P, "channel_not_found"),
        (Channel.EMAIL, {"address": "not-an-address"}, P, "smtp"),
    ],
    ids=["sms-bad-number", "push-stale-token", "slack-unknown-user", "email-bad-rcpt"],
)
async def test_bad_recipients_are_permanent(
    sandbox: dict[str, str],
    providers: dict[Channel, Provider],
    control: httpx.AsyncClient,
    channel: Channel,
    overrides: dict[str, Any],
    category: FailureCategory,
    reason: str,
) -> None:
    with pytest.raises(ProviderError) as caught:
        await providers[channel].send(command(channel, sandbox, **overrides))
    assert caught.value.category is category, caught.value.reason
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("channel", "fault", "category"),
    [
        (Channel.SMS, {"fail_next": 1, "status": 503}, T),
        (Channel.SMS, {"fail_next": 1, "status": 429, "code": "20429"}, T),
        (Channel.PUSH, {"fail_next": 1, "status": 500}, T),
        (Channel.SLACK, {"fail_next": 1, "code": "ratelimited"}, T),
        (Channel.TEAMS, {"fail_next": 1, "status": 502}, T),
        (Channel.WEBHOOK, {"fail_next": 1, "status": 400}, P),
        (Channel.EMAIL, {"fail_next": 1, "status": 451}, T),
        (Channel.SMS, {"hang": True}, T),
        (Channel.PUSH, {"drop": True}, T),
    ],
    ids=[
        "sms-503",
        "sms-429",
        "push-500",
        "slack-ratelimited",
        "teams-502",
        "webhook-400",
        "smtp-451",
        "sms-timeout",
        "push-dropped",
    ],
)
async def test_injected_failures_map_to_categories(
    sandbox: dict[str, str],
    providers: dict[Channel, Provider],
    control: httpx.AsyncClient,
    channel: Channel,
    fault: dict[str, Any],
    category: FailureCategory,
) -> None:
    await control.put(f"/_sandbox/faults/{PROVIDER_OF[channel]}", json=fault)
    with pytest.raises(ProviderError) as caught:
        await providers[channel].send(command(channel, sandbox))
    assert caught.value.category is category, caught.value.reason


async def test_bad_credentials_are_configuration_errors(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    wrong = build_providers(
        settings_for(
            sandbox,
            twilio_auth_token="nope",
            slack_bot_token="xoxb-wrong",
            fcm_access_token="x",
            fcm_project_id="",
        )
    )
    try:
        for channel, code in (
            (Channel.SMS, "20003"),
            (Channel.SLACK, "invalid_auth"),
            (Channel.PUSH, "NOTIFIER_FCM_PROJECT_ID"),
        ):
            with pytest.raises(ProviderError) as caught:
                await wrong[channel].send(command(channel, sandbox))
            assert caught.value.category is C
            assert code in caught.value.reason
    finally:
        for provider in wrong.values():
            await provider.close()


async def test_sendgrid_and_fcm_requests_fit_the_published_types(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    """SendGrid types the top-level custom_args as a string and FCM's Android priority is an
    enum of NORMAL and HIGH: the adapters' requests are accepted, the old shapes refused."""
    built = build_providers(settings_for(sandbox, email_provider="sendgrid"))
    try:
        email = command(Channel.EMAIL, sandbox)
        await built[Channel.EMAIL].send(email)
        await built[Channel.PUSH].send(command(Channel.PUSH, sandbox))
    finally:
        for provider in built.values():
            await provider.close()
    seen = {r["provider"]: r for r in (await control.get("/_sandbox/requests")).json()}
    assert seen["sendgrid"]["summary"]["custom_args"]["notification_id"] == email.notification_id
    assert seen["sendgrid"]["notification_id"] == email.notification_id
    assert seen["fcm"]["status"] == 200

    sg = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "n@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "v"}],
        "custom_args": {"notification_id": "x"},
    }
    refused = await control.post(
        "/sendgrid/v3/mail/send",
        json=sg,
        headers={"Authorization": f"Bearer {sandbox['NOTIFIER_SENDGRID_API_KEY']}"},
    )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "custom_args"
    push = {"message": {"token": "fcm-token-1", "android": {"priority": "high"}}}
    refused = await control.post(
        "/fcm/v1/projects/sandbox/messages:send",
        json=push,
        headers={"Authorization": f"Bearer {sandbox['NOTIFIER_FCM_ACCESS_TOKEN']}"},
    )
    assert refused.status_code == 400
    assert "message.android.priority" in refused.json()["error"]["message"]


async def test_a_refused_connection_is_a_connection_error_not_a_timeout(
    sandbox: dict[str, str],
) -> None:
    """Nothing listens on the port: refused at once, reported as a connection failure."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound, never listening: connections are refused
        built = build_providers(
            settings_for(sandbox, slack_base_url=f"http://127.0.0.1:{closed}/api")
        )
        try:
            with pytest.raises(ProviderError) as failed:
                await built[Channel.SLACK].send(command(Channel.SLACK, sandbox))
        finally:
            for provider in built.values():
                await provider.close()
    assert failed.value.category is T
    assert "ClientConnectorError" in failed.value.reason and "in time" not in failed.value.reason


# --- the incident's details, as each provider received them -------------------------------

DASHBOARD = "https://grafana.example.com/d/checkout"
DETAILED = IncidentText(
    title="checkout-api: error rate above 5%",
    priority=Priority.HIGH,
    escalation_level=1,
    description="5xx ratio 7.2%",
    url="https://inc.example.com/1",
    service="checkout-api",
    team_name="Payments",
    alert_count=3,
    triggered_at=datetime(2026, 12, 3, 11, 58, tzinfo=UTC),
    dashboard_url=DASHBOARD,
)
WHEN = "2026-12-03 11:58 UTC"


def detailed(channel: Channel, sandbox: dict[str, str]) -> SendCommand:
    """A command as the dispatcher makes it: rendered text and the details on the side."""
    title, body = render(channel, NotificationKind.ALERT, DETAILED)
    return command(
        channel,
        sandbox,
        title=title,
        body=body,
        url=DETAILED.url,
        service=DETAILED.service,
        team_name=DETAILED.team_name,
        alert_count=DETAILED.alert_count,
        triggered_at=DETAILED.triggered_at,
        dashboard_url=DASHBOARD,
    )


def _received(channel: str, summary: dict[str, Any]) -> tuple[str, list[str]]:
    """(text the person reads, links they can open) out of the sandbox's recording."""
    if channel in ("smtp", "sendgrid"):
        return summary["text"], summary["hrefs"]
    if channel == "sms":  # a phone makes a link of a URL in the text
        return summary["body"], re.findall(r"https?://\S+", summary["body"])
    if channel == "voice":
        return summary["twiml"], []
    if channel == "fcm":
        return summary["body"], [summary["data"]["dashboard_url"]]
    if channel == "slack":
        text = "\n".join(summary["texts"])
        return text, [m for m in re.findall(r"<([^|>]+)\|", text)]
    if channel == "teams":
        return "\n".join(summary["texts"]), list(summary["links"].values())
    payload = summary["payload"]
    return payload["body"], [payload["dashboard_url"]]


@pytest.mark.parametrize(
    ("channel", "email_provider", "recorded_as", "shown"),
    [
        (Channel.EMAIL, "smtp", "smtp", ("Service: checkout-api", "Team: Payments", "Alerts: 3")),
        (Channel.EMAIL, "sendgrid", "sendgrid", ("Service: checkout-api", "Alerts: 3")),
        (Channel.SMS, "smtp", "sms", ("checkout-api (Payments)", "3 alerts", DASHBOARD)),
        (Channel.VOICE, "smtp", "voice", ("Service checkout-api", "Team Payments", "3 alerts")),
        (Channel.PUSH, "smtp", "fcm", ("Service: checkout-api", "Team: Payments", "Alerts: 3")),
        (Channel.SLACK, "smtp", "slack", ("Service: checkout-api", "Team: Payments", "Alerts: 3")),
        (Channel.TEAMS, "smtp", "teams", ("Service: checkout-api", "Team: Payments", "Alerts: 3")),
        (Channel.WEBHOOK, "smtp", "webhook", ("Service: checkout-api", "Team: Payments")),
    ],
    ids=["smtp", "sendgrid", "sms", "voice", "push", "slack", "teams", "webhook"],
)
async def test_the_provider_receives_the_incident_details(
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    channel: Channel,
    email_provider: str,
    recorded_as: str,
    shown: tuple[str, ...],
) -> None:
    built = build_providers(settings_for(sandbox, email_provider=email_provider))
    try:
        await built[channel].send(detailed(channel, sandbox))
    finally:
        for provider in built.values():
            await provider.close()
    [request] = (await control.get("/_sandbox/requests")).json()
    text, links = _received(recorded_as, request["summary"])
    for part in (*shown, WHEN):
        assert part in text, f"{recorded_as} received no {part!r}: {text!r}"
    if channel is not Channel.VOICE:  # a call cannot show a link
        assert DASHBOARD in links, f"{recorded_as}: no dashboard link in {links}"
    if channel is Channel.WEBHOOK:
        payload = request["summary"]["payload"]
        assert (payload["service"], payload["team_name"], payload["alert_count"]) == (
            "checkout-api",
            "Payments",
            3,
        )
        assert payload["triggered_at"] == "2026-12-03T11:58:00+00:00"
