"""Vonage SMS API (form POST to /sms/json with api_key/api_secret) and Voice API (JSON POST
to /v1/calls with an application JWT): the second SMS and voice provider after Twilio."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.base import HttpProvider, ProviderError, missing
from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, SendCommand
from notifier.domain.failures import Failure, FailureKind
from notifier.settings import Settings

JWT_LIFETIME_S = 900  # Vonage's own default for an application JWT (15 minutes)
_DIGITS = re.compile(r"\+?\d{6,13}(\d{2})")


def vonage_number(number: str) -> str:
    """An E.164 number as Vonage takes it: digits only, no leading '+'."""
    return number.strip().removeprefix("+")


def masked(text: str) -> str:
    """`text` (a provider's error text) with any phone number in it hidden."""
    return _DIGITS.sub(r"***\1", text)


def sms_status(body: Any) -> tuple[str, str]:
    """(status, error text) of an SMS API answer: the first part that failed, else "0"."""
    parts = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(parts, list) or not parts:
        return "5", "no messages in the answer"  # Vonage's own 'internal error' code
    for part in parts:
        status = str(part.get("status", ""))
        if status != "0":
            return status, str(part.get("error-text", ""))
    return "0", ""


class VonageSms(HttpProvider):
    """SMS through the SMS API; our notification id travels as client-ref."""

    name = "vonage"
    channel = Channel.SMS

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings

    def build(self, command: SendCommand) -> HttpCall:
        if not self.settings.vonage_api_key:
            raise missing("NOTIFIER_VONAGE_API_KEY")
        if self.settings.vonage_api_secret is None:
            raise missing("NOTIFIER_VONAGE_API_SECRET")
        if not self.settings.vonage_from:
            raise missing("NOTIFIER_VONAGE_FROM")
        text = command.body
        form = {
            "api_key": self.settings.vonage_api_key,
            "api_secret": self.settings.vonage_api_secret.get_secret_value(),
            "from": vonage_number(self.settings.vonage_from),
            "to": vonage_number(command.address),
            "text": text,
            # GSM-7 garbles what it cannot encode: anything past ASCII goes as unicode
            "type": "unicode" if any(ord(c) > 127 for c in text) else "text",
            "client-ref": command.notification_id[:100],
        }
        url = f"{self.settings.vonage_sms_base_url.rstrip('/')}/sms/json"
        return HttpCall("POST", url, data=form)

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        try:
            body = response.json()
        except ValueError:
            raise self.http_error(response, None, response.text) from None
        if response.status_code != 200:
            detail = (body.get("detail") or body.get("title")) if isinstance(body, dict) else None
            raise self.http_error(response, None, masked(str(detail or response.text)))
        status, text = sms_status(body)
        if status != "0":
            # the SMS API answers 200 and says what went wrong in each message part's status
            raise ProviderError(
                Failure(FailureKind.PROVIDER, 200, f"vonage:{status}"),
                f"vonage: status {status}: {masked(text)[:300]}",
            )
        return str(body["messages"][0]["message-id"])


class VonageVoice(HttpProvider):
    """A phone call through the Voice API whose NCCO reads the message out twice."""

    name = "vonage"
    channel = Channel.VOICE

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings
        self.key: rsa.RSAPrivateKey | None = None
        if settings.vonage_private_key_file is not None:
            self.key = load_private_key(settings)  # an unusable key stops the worker at start

    def token(self, now: float | None = None) -> str:
        """A fresh application JWT (RS256) for one request."""
        if not self.settings.vonage_application_id:
            raise missing("NOTIFIER_VONAGE_APPLICATION_ID")
        if self.key is None:
            raise missing("NOTIFIER_VONAGE_PRIVATE_KEY_FILE")
        issued = int(now if now is not None else time.time())
        claims = {
            "application_id": self.settings.vonage_application_id,
            "iat": issued,
            "jti": str(uuid.uuid4()),
            "exp": issued + JWT_LIFETIME_S,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"typ": "JWT"})

    def build(self, command: SendCommand) -> HttpCall:
        token = self.token()
        if not self.settings.vonage_from:
            raise missing("NOTIFIER_VONAGE_FROM")
        payload = {
            "to": [{"type": "phone", "number": vonage_number(command.address)}],
            "from": {"type": "phone", "number": vonage_number(self.settings.vonage_from)},
            "ncco": [{"action": "talk", "text": command.body, "loop": 2}],
        }
        return HttpCall(
            "POST",
            f"{self.settings.vonage_voice_base_url.rstrip('/')}/v1/calls",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
        )

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        if response.status_code in (200, 201):
            return str(response.json()["uuid"])
        try:
            # errors are RFC 7807 problems: type, title, detail, instance
            body = response.json()
            detail = f"{body.get('title', '')}: {body.get('detail', '')}"
        except (ValueError, AttributeError):
            detail = response.text
        raise self.http_error(response, None, masked(detail))


def load_private_key(settings: Settings) -> rsa.RSAPrivateKey:
    """The Vonage application's RSA private key from its PEM file; ProviderError (a
    configuration error) when the file cannot be read or holds no RSA key."""
    path = settings.vonage_private_key_file
    if path is None:
        raise missing("NOTIFIER_VONAGE_PRIVATE_KEY_FILE")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ProviderError(
            Failure(FailureKind.MISSING_SETTING),
            f"vonage: private key file {path} unusable: {type(exc).__name__}",
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProviderError(
            Failure(FailureKind.MISSING_SETTING),
            f"vonage: private key file {path} holds no RSA key (Vonage signs with RS256)",
        )
    return key
