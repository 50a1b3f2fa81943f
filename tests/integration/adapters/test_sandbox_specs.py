"""Over a socket, the sandbox checks SendGrid, FCM, Teams and Twilio request bodies against
the published schemas: what the adapters send passes, a body the schema refuses gets the
provider's own error shape and status, and the adapter files that answer as permanent."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.base import Provider, ProviderError
from adapters.fcm import FcmPush
from adapters.providers import build_providers
from adapters.sendgrid import SendGridEmail
from adapters.teams import TeamsCard
from adapters.twilio import TwilioSms, TwilioVoice
from notifier.contracts.records import Channel, FailureCategory
from tests.integration.adapters.test_adapters_on_sandbox import command, settings_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def control(sandbox: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox["SANDBOX_URL"]) as client:
        await client.delete("/_sandbox/requests")
        yield client
        await client.delete("/_sandbox/requests")


@pytest.fixture
async def providers(sandbox: dict[str, str]) -> AsyncIterator[dict[Channel, Provider]]:
    built = build_providers(settings_for(sandbox, email_provider="sendgrid"))
    yield built
    for provider in built.values():
        await provider.close()


@pytest.mark.parametrize(
    ("channel", "name", "status"),
    [
        (Channel.EMAIL, "sendgrid", 202),
        (Channel.PUSH, "fcm", 200),
        (Channel.TEAMS, "teams", 200),
        (Channel.SMS, "twilio", 201),
        (Channel.VOICE, "twilio", 201),
    ],
)
async def test_the_adapters_requests_fit_the_published_schema(
    sandbox: dict[str, str],
    providers: dict[Channel, Provider],
    control: httpx.AsyncClient,
    channel: Channel,
    name: str,
    status: int,
) -> None:
    assert providers[channel].name == name
    await providers[channel].send(command(channel, sandbox))
    recorded = (await control.get("/_sandbox/requests", params={"provider": name})).json()
    assert [r["status"] for r in recorded] == [status]


SENDGRID_MAIL: dict[str, Any] = {
    "personalizations": [{"to": [{"email": "alice@example.com"}]}],
    "from": {"email": "notifier@example.com"},
    "subject": "db down",
    "content": [{"type": "text/plain", "value": "Primary unreachable."}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"custom_args": {"notification_id": "n-1"}}, "custom_args"),
        ({"from": {"name": "notifier"}}, "from.email"),
        ({"content": [{"type": "text/plain"}]}, "content.0.value"),
        ({"personalizations": [{"to": [{"email": "alice"}]}]}, "personalizations.0.to.0.email"),
    ],
    ids=["top-level-custom-args-object", "from-without-email", "content-no-value", "bad-to"],
)
async def test_sendgrid_refuses_a_body_its_schema_refuses(
    sandbox: dict[str, str], control: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    refused = await control.post(
        "/sendgrid/v3/mail/send",
        json={**SENDGRID_MAIL, **change},
        headers={"Authorization": f"Bearer {sandbox['NOTIFIER_SENDGRID_API_KEY']}"},
    )
    assert refused.status_code == 400
    errors = refused.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"]


FCM_MESSAGE: dict[str, Any] = {"token": "fcm-token-1", "notification": {"title": "t"}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"android": {"priority": "high"}}, "message.android.priority"),
        ({"data": {"attempt": 2}}, "message.data.attempt"),
        ({"priority": "HIGH"}, "message"),
    ],
    ids=["lower-case-priority", "data-not-string", "unknown-field"],
)
async def test_fcm_refuses_a_body_its_schema_refuses(
    sandbox: dict[str, str], control: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    refused = await control.post(
        "/fcm/v1/projects/sandbox/messages:send",
        json={"message": {**FCM_MESSAGE, **change}},
        headers={"Authorization": f"Bearer {sandbox['NOTIFIER_FCM_ACCESS_TOKEN']}"},
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    [detail] = error["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert [v["field"] for v in detail["fieldViolations"]] == [field]
    assert field in error["message"]


async def test_the_sandbox_checks_credentials_before_the_schema(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    refused = await control.post(
        "/fcm/v1/projects/sandbox/messages:send",
        json={"message": {**FCM_MESSAGE, "android": {"priority": "high"}}},
        headers={"Authorization": "Bearer wrong"},
    )
    assert refused.status_code == 401


CARD: dict[str, Any] = {
    "type": "AdaptiveCard",
    "version": "1.4",
    "body": [{"type": "TextBlock", "text": "db down"}],
}


@pytest.mark.parametrize(
    "change",
    [
        {"body": [{"type": "TextBlok", "text": "db down"}]},
        {"actions": [{"type": "Action.OpenUrl", "title": "Open"}]},
    ],
    ids=["unknown-element", "open-url-without-url"],
)
async def test_teams_refuses_a_card_its_schema_refuses(
    sandbox: dict[str, str], control: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    def post(card: dict[str, Any]) -> Any:
        attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        return control.post(
            "/teams/webhook/alice", json={"type": "message", "attachments": [attachment]}
        )

    assert (await post(CARD)).status_code == 200
    refused = await post({**CARD, **change})
    assert (refused.status_code, refused.text) == (
        400,
        "Bad payload received by generic incoming webhook.",
    )


TWILIO_FORMS = {
    "Messages": {"To": "+14155550101", "From": "+14155550000", "Body": "db down"},
    "Calls": {"To": "+14155550101", "From": "+14155550000", "Twiml": "<Response/>"},
}


@pytest.mark.parametrize(
    ("resource", "change", "code", "says"),
    [
        ("Messages", {"To": None}, 21604, "'To'"),
        ("Calls", {"From": None}, 21213, "'From'"),
        ("Calls", {"Method": "PUT"}, 20001, "Method"),
        ("Messages", {"ValidityPeriod": "ten minutes"}, 20001, "ValidityPeriod"),
        ("Messages", {"StatusCallback": "/twilio/status"}, 20001, "StatusCallback"),
    ],
    ids=["sms-no-to", "call-no-from", "call-method", "validity-not-integer", "relative-callback"],
)
async def test_twilio_refuses_a_form_its_schema_refuses(
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    resource: str,
    change: dict[str, str | None],
    code: int,
    says: str,
) -> None:
    """A valid form with one field changed (None: left out) gets Twilio's error body."""
    form = {**TWILIO_FORMS[resource], **change}
    account = sandbox["NOTIFIER_TWILIO_ACCOUNT_SID"]
    url = f"/twilio/2010-04-01/Accounts/{account}/{resource}.json"
    auth = (account, sandbox["NOTIFIER_TWILIO_AUTH_TOKEN"])
    assert (await control.post(url, data=TWILIO_FORMS[resource], auth=auth)).status_code == 201
    sent = {k: v for k, v in form.items() if v is not None}
    refused = await control.post(url, data=sent, auth=auth)
    assert refused.status_code == 400
    error = refused.json()
    assert set(error) == {"code", "message", "more_info", "status"}
    assert (error["code"], error["status"]) == (code, 400)
    assert error["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert says in error["message"]


@pytest.mark.parametrize(
    ("channel", "rewrite", "code"),
    [
        (
            Channel.PUSH,
            lambda body: body["message"]["android"].update(priority="high"),
            "INVALID_ARGUMENT",
        ),
        (Channel.EMAIL, lambda body: body.update(custom_args={"n": "1"}), "Expected: string"),
        (
            Channel.TEAMS,
            lambda body: body["attachments"][0]["content"]["body"][0].update(weight="bold"),
            "Bad payload",
        ),
        (Channel.SMS, lambda form: form.pop("To"), "code 21604"),
        (Channel.VOICE, lambda form: form.update(StatusCallback="twilio/status"), "code 20001"),
    ],
    ids=[
        "fcm-lower-case-priority",
        "sendgrid-custom-args-object",
        "teams-card-bad-weight",
        "twilio-sms-no-to",
        "twilio-call-relative-callback",
    ],
)
async def test_a_schema_refusal_is_permanent_for_the_adapter(
    sandbox: dict[str, str],
    providers: dict[Channel, Provider],
    control: httpx.AsyncClient,
    channel: Channel,
    rewrite: Any,
    code: str,
) -> None:
    """The adapter's own request with one defect put back: the answer is classified as it
    would be in production, permanent (no retry can fix it)."""
    adapter = providers[channel]
    adapter = getattr(adapter, "inner", adapter)  # email goes through the links wrapper
    assert isinstance(adapter, FcmPush | SendGridEmail | TeamsCard | TwilioSms | TwilioVoice)
    cmd = command(channel, sandbox)
    call = adapter.build(cmd)
    # Twilio's body is a form (data), the others' JSON
    if call.data is not None:
        form = dict(call.data)
        rewrite(form)
        call = dataclasses.replace(call, data=form)
    else:
        body = dict(call.json)
        rewrite(body)
        call = dataclasses.replace(call, json=body)
    with pytest.raises(ProviderError) as caught:
        await adapter.request(cmd, call)
    assert caught.value.category is FailureCategory.PERMANENT, caught.value.reason
    assert "HTTP 400" in caught.value.reason
    assert code in caught.value.reason
