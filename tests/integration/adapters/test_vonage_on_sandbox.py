"""Vonage's SMS and Voice adapters over a socket to the sandbox, which checks the
credentials, the application JWT and the fields as Vonage does; every failure maps to its
category."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.base import Provider, ProviderError
from adapters.providers import build_provider
from notifier.contracts.records import Channel, FailureCategory, SendCommand
from tests.integration.adapters.test_adapters_on_sandbox import command, settings_for

pytestmark = pytest.mark.integration
T, P, C = FailureCategory.TRANSIENT, FailureCategory.PERMANENT, FailureCategory.CONFIGURATION


@pytest.fixture
async def control(sandbox: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox["SANDBOX_URL"]) as client:
        await client.delete("/_sandbox/requests")
        yield client
        await client.delete("/_sandbox/requests")


async def send(
    sandbox: dict[str, str], channel: Channel, cmd: SendCommand | None = None, **settings: Any
) -> str:
    """Send one command through a freshly built Vonage adapter of `channel`."""
    provider: Provider = build_provider(channel, "vonage", settings_for(sandbox, **settings))
    try:
        return await provider.send(cmd or command(channel, sandbox))
    finally:
        await provider.close()


async def failure(
    sandbox: dict[str, str], channel: Channel, cmd: SendCommand | None = None, **settings: Any
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await send(sandbox, channel, cmd, **settings)
    return caught.value


async def recorded(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await control.get("/_sandbox/requests", params={"provider": "vonage"})
    ).json()
    return found


async def test_an_sms_goes_out_in_vonages_format(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    cmd = command(Channel.SMS, sandbox)
    message_id = await send(sandbox, Channel.SMS, cmd)
    [seen] = await recorded(control)
    assert seen["path"] == "/vonage/rest/sms/json"
    assert (seen["status"], seen["message_id"]) == (200, message_id)
    # E.164 without the '+'; our notification id came back as client-ref
    assert (seen["to"], seen["summary"]["from"]) == ("14155550101", "14155550001")
    assert seen["notification_id"] == cmd.notification_id
    assert (seen["summary"]["text"], seen["summary"]["type"]) == (cmd.body, "text")


async def test_an_sms_beyond_ascii_goes_as_unicode(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    await send(sandbox, Channel.SMS, command(Channel.SMS, sandbox, body="Base de données ⚠"))
    [seen] = await recorded(control)
    assert seen["summary"]["type"] == "unicode"


async def test_a_call_goes_out_with_a_verified_application_jwt(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    cmd = command(Channel.VOICE, sandbox)
    call = await send(sandbox, Channel.VOICE, cmd)
    [seen] = await recorded(control)
    assert seen["path"] == "/vonage/api/v1/calls"
    assert (seen["status"], seen["message_id"]) == (201, call)
    assert uuid.UUID(call)
    assert (seen["to"], seen["summary"]["from"]) == ("14155550101", "14155550001")
    assert seen["summary"]["ncco"] == [{"action": "talk", "text": cmd.body, "loop": 2}]


@pytest.mark.parametrize(
    ("channel", "overrides", "settings", "category", "reason"),
    [
        (Channel.SMS, {"address": "+1555"}, {}, P, "status 3"),
        (Channel.SMS, {}, {"vonage_api_secret": "wrong"}, C, "status 4"),
        (Channel.SMS, {}, {"vonage_from": "+1 not a sender!"}, C, "status 15"),
        (Channel.VOICE, {"address": "+1555"}, {}, P, "HTTP 400"),
    ],
    ids=["sms-bad-number", "sms-bad-credentials", "sms-bad-sender", "voice-bad-number"],
)
async def test_refusals_map_to_categories(
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    channel: Channel,
    overrides: dict[str, Any],
    settings: dict[str, Any],
    category: FailureCategory,
    reason: str,
) -> None:
    error = await failure(sandbox, channel, command(channel, sandbox, **overrides), **settings)
    assert error.category is category
    assert reason in error.reason
    assert "5550101" not in error.reason and "wrong" not in error.reason


async def test_a_call_signed_by_an_unregistered_key_is_a_configuration_error(
    sandbox: dict[str, str], control: httpx.AsyncClient, tmp_path: Path
) -> None:
    stranger = tmp_path / "other.key"
    stranger.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    error = await failure(sandbox, Channel.VOICE, vonage_private_key_file=stranger)
    assert (error.category, error.failure.status) == (C, 401)
    assert "Unauthorized" in error.reason
    [seen] = await recorded(control)
    assert seen["summary"]["refused"] == "invalid JWT: Signature verification failed"


@pytest.mark.parametrize(
    ("channel", "fault", "category", "reason"),
    [
        (Channel.SMS, {"code": "1"}, T, "status 1: Injected failure"),  # throttled
        (Channel.SMS, {"code": "5"}, T, "status 5"),  # internal error
        (Channel.SMS, {"code": "7"}, P, "status 7"),  # number barred
        (Channel.SMS, {"code": "9"}, C, "status 9"),  # out of credit
        (Channel.SMS, {"status": 500}, T, "HTTP 500"),
        (Channel.SMS, {"status": 429, "retry_after": 7}, T, "HTTP 429"),
        (Channel.VOICE, {"status": 503}, T, "HTTP 503"),
        (Channel.VOICE, {"status": 429}, T, "HTTP 429"),
        (Channel.VOICE, {"status": 401}, C, "HTTP 401"),
        (Channel.VOICE, {"status": 403}, C, "HTTP 403"),
    ],
)
async def test_injected_failures_map_to_categories(
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    channel: Channel,
    fault: dict[str, Any],
    category: FailureCategory,
    reason: str,
) -> None:
    await control.put("/_sandbox/faults/vonage", json={"fail_next": 1, **fault})
    error = await failure(sandbox, channel)
    assert error.category is category
    assert reason in error.reason
    if "retry_after" in fault:
        assert error.retry_after_s == fault["retry_after"]
    # the fault is spent: the next one goes out
    assert await send(sandbox, channel)


async def test_a_hung_vonage_is_a_timeout(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    await control.put("/_sandbox/faults/vonage", json={"hang": True})
    try:
        error = await failure(sandbox, Channel.SMS, send_timeout_s=0.5)
    finally:
        await control.delete("/_sandbox/faults/vonage")
        await control.delete("/_sandbox/requests")  # releases the hung request
    assert error.category is T
    assert "no answer in time" in error.reason


async def test_missing_settings_are_configuration_errors(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    error = await failure(sandbox, Channel.SMS, vonage_api_key="")
    assert (error.category, error.reason) == (C, "setting NOTIFIER_VONAGE_API_KEY is not set")
    assert not await recorded(control)  # refused before any request


async def test_an_unusable_private_key_file_is_refused_when_built(
    sandbox: dict[str, str], tmp_path: Path
) -> None:
    placeholder = tmp_path / "private.key"
    placeholder.write_text("REPLACE_ME")
    with pytest.raises(ProviderError) as caught:
        build_provider(
            Channel.VOICE, "vonage", settings_for(sandbox, vonage_private_key_file=placeholder)
        )
    assert caught.value.category is C
    assert "private key file" in caught.value.reason
