"""Push in production: FCM's access tokens minted from a service account over a socket
(the sandbox serves Google's token endpoint), reused while fresh, minted again before
they expire, and a refused account reported as a configuration error."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.base import ProviderError
from adapters.providers import build_provider
from notifier.contracts.records import Channel, FailureCategory
from tests.integration.adapters.test_adapters_on_sandbox import command, settings_for

pytestmark = pytest.mark.integration


def service_account(sandbox: dict[str, str], folder: Path) -> tuple[Path, str, str]:
    """A fresh service-account key file whose token_uri is the sandbox's; (file, email,
    public key PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"notifier-{uuid.uuid4().hex[:8]}@sandbox-project.iam.gserviceaccount.com"
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    path = folder / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "sandbox-project",
                "private_key_id": uuid.uuid4().hex,
                "private_key": private,
                "client_email": email,
                "client_id": "1",
                "token_uri": f"{sandbox['SANDBOX_URL']}/google/token",
            }
        )
    )
    return path, email, public


@pytest.fixture
async def control(sandbox: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox["SANDBOX_URL"]) as client:
        await client.delete("/_sandbox/requests")
        yield client


async def push(sandbox: dict[str, str], key_file: Path, times: int = 1) -> None:
    """Push `times` through an FCM adapter whose tokens come from `key_file`."""
    fcm = build_provider(
        Channel.PUSH,
        "fcm",
        settings_for(sandbox, fcm_service_account_file=key_file, fcm_access_token=None),
    )
    try:
        for _ in range(times):
            assert await fcm.send(command(Channel.PUSH, sandbox))
    finally:
        await fcm.close()


async def requests_of(control: httpx.AsyncClient, provider: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await control.get("/_sandbox/requests", params={"provider": provider})
    ).json()
    return found


@pytest.mark.parametrize(
    ("lifetime_s", "minted"),
    [(3600, 1), (60, 2)],
    ids=["an hour: minted once, reused", "a minute: minted again before each send"],
)
async def test_tokens_are_minted_from_the_service_account_and_refreshed(
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    tmp_path: Path,
    lifetime_s: int,
    minted: int,
) -> None:
    key_file, email, public = service_account(sandbox, tmp_path)
    registered = await control.put(
        "/_sandbox/google/service-accounts",
        json={"client_email": email, "public_key_pem": public, "token_lifetime_s": lifetime_s},
    )
    assert registered.status_code == 200
    await push(sandbox, key_file, times=2)
    tokens = await requests_of(control, "google")
    assert [(r["status"], r["to"]) for r in tokens] == [(200, email)] * minted
    assert [r["status"] for r in await requests_of(control, "fcm")] == [200, 200]


async def test_an_account_google_does_not_know_is_a_configuration_error(
    sandbox: dict[str, str], control: httpx.AsyncClient, tmp_path: Path
) -> None:
    key_file, _, _ = service_account(sandbox, tmp_path)  # never registered
    with pytest.raises(ProviderError) as refused:
        await push(sandbox, key_file)
    assert refused.value.category is FailureCategory.CONFIGURATION
    assert "no access token" in refused.value.reason
    assert await requests_of(control, "fcm") == []  # FCM itself was never called


async def test_every_device_gets_the_push_and_unregistered_ones_are_dropped(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    """Tokens starting 'stale-' are unregistered in the sandbox: the live devices get the
    push, the stale one is asked once and then no more; with none left it is permanent."""
    fcm = build_provider(Channel.PUSH, "fcm", settings_for(sandbox))
    devices = {"tokens": "phone-1,stale-tablet,phone-2"}
    try:
        for _ in range(2):
            sent = await fcm.send(
                command(Channel.PUSH, sandbox, address="phone-1", address_params=devices)
            )
            assert sent.startswith("projects/")
        with pytest.raises(ProviderError) as gone:
            await fcm.send(
                command(
                    Channel.PUSH,
                    sandbox,
                    address="stale-a",
                    address_params={"tokens": "stale-a,stale-b"},
                )
            )
        asked = await requests_of(control, "fcm")
        with pytest.raises(ProviderError) as known:  # none left to ask
            await fcm.send(command(Channel.PUSH, sandbox, address="stale-a"))
    finally:
        await fcm.close()
    # three devices, then the two live ones, then both stale ones of the other person
    assert len(asked) == 3 + 2 + 2
    delivered = sorted(r["to"] for r in asked if r["status"] == 200)
    assert delivered == ["phone-1", "phone-1", "phone-2", "phone-2"]
    assert gone.value.category is known.value.category is FailureCategory.PERMANENT
    assert len(await requests_of(control, "fcm")) == len(asked)  # nobody was asked again


async def test_a_person_with_one_device_is_pushed_and_an_unregistered_one_dropped(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> None:
    """One device (most people): the same outcomes as with several."""
    fcm = build_provider(Channel.PUSH, "fcm", settings_for(sandbox))
    try:
        sent = await fcm.send(command(Channel.PUSH, sandbox, address="phone-9"))
        with pytest.raises(ProviderError) as gone:
            await fcm.send(command(Channel.PUSH, sandbox, address="stale-9"))
        with pytest.raises(ProviderError) as known:  # not asked again
            await fcm.send(command(Channel.PUSH, sandbox, address="stale-9"))
    finally:
        await fcm.close()
    assert sent.startswith("projects/")
    assert gone.value.failure.code == "UNREGISTERED"
    assert gone.value.category is known.value.category is FailureCategory.PERMANENT
    asked = await requests_of(control, "fcm")
    assert [r["status"] for r in asked] == [200, 404]


async def test_a_token_endpoint_outage_is_transient(
    sandbox: dict[str, str], control: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Google's token endpoint answering 503 is worth a retry, not a configuration error."""
    key_file, email, public = service_account(sandbox, tmp_path)
    await control.put(
        "/_sandbox/google/service-accounts", json={"client_email": email, "public_key_pem": public}
    )
    await control.put("/_sandbox/faults/google", json={"fail_next": 10, "status": 503})
    try:
        with pytest.raises(ProviderError) as unavailable:
            await push(sandbox, key_file)
    finally:
        await control.delete("/_sandbox/faults/google")
    assert unavailable.value.category is FailureCategory.TRANSIENT
    assert await requests_of(control, "fcm") == []
