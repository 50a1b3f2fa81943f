"""Vonage's SMS API and Voice API as callers meet them: the SMS API answers 200 with a
status per message part; the Voice API wants an application JWT (RS256) and answers
errors as RFC 7807 problems.

Applications are registered through the control API with their public key, so no key is
kept in the repository; a call whose JWT no registered key verifies is refused with 401.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

Reply = tuple[int, Any, dict[str, str], dict[str, Any]]
NUMBER = re.compile(r"[1-9]\d{6,14}")  # E.164 digits, without the '+' Vonage refuses
ALPHA_SENDER = re.compile(r"[A-Za-z0-9 ]{1,11}")
NCCO_ACTIONS = {"talk", "stream", "input", "record", "conversation", "connect", "notify"}
DEFAULT_LIFETIME_S = 900  # a JWT without exp is valid 15 minutes from its iat
CLOCK_SKEW_S = 60
# the SMS API's error texts, by status (the documented ones the sandbox can answer)
SMS_ERRORS = {
    "1": "Throttled",
    "2": "Missing Parameters",
    "3": "Invalid Parameters",
    "4": "Bad Credentials",
    "5": "Internal Error",
    "6": "Invalid Message",
    "7": "Number Barred",
    "8": "Partner Account Barred",
    "9": "Partner Quota Violation",
    "10": "Too Many Existing Binds",
    "11": "Account Not Enabled For HTTP",
    "12": "Message Too Long",
    "14": "Invalid Signature",
    "15": "Illegal Sender Address - rejected",
    "22": "Invalid Network Code",
    "23": "Invalid Callback Url",
    "29": "Non White-listed Destination - rejected",
    "32": "Signature And API Secret Disallowed",
    "33": "Number De-activated",
}


def sms_error(status: str, text: str | None = None) -> Reply:
    """An SMS API refusal: HTTP 200, one message part with a non-zero status."""
    body = {
        "message-count": "1",
        "messages": [{"status": status, "error-text": text or SMS_ERRORS.get(status, "Error")}],
    }
    return 200, body, {}, {}


def problem(status: int, title: str, detail: str, **extra: Any) -> Reply:
    """A Voice API error: an RFC 7807 problem document."""
    slug = title.lower().replace(" ", "-")
    body = {
        "type": f"https://developer.nexmo.com/api-errors#{slug}",
        "title": title,
        "detail": detail,
        "instance": str(uuid.uuid4()),
        **extra,
    }
    # bytes: the sandbox's JSON replies are application/json, Vonage's problems are not
    content = json.dumps(body).encode()
    return status, content, {"Content-Type": "application/problem+json"}, {}


def fault_reply(path: str, status: int, code: str | None) -> Reply:
    """An injected failure in Vonage's shape: an SMS status code comes in a 200, anything
    else is the HTTP status with a problem document."""
    if path.endswith("/sms/json") and code:
        return sms_error(code, "Injected failure")
    headers = {"Retry-After": "1"} if status == 429 else {}
    title = {401: "Unauthorized", 429: "Too Many Requests"}.get(status, "Injected failure")
    reply_status, body, _, fields = problem(status, title, "Injected failure")
    return reply_status, body, headers, fields


def _form(body: bytes, content_type: str) -> dict[str, str]:
    if content_type.startswith("application/json"):
        try:
            found = json.loads(body)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


def sms(api_key: str, api_secret: str, query: dict[str, str], body: bytes, ctype: str) -> Reply:
    """POST /sms/json: parameters in the form (or JSON) body or the query string."""
    form = {**query, **_form(body, ctype)}
    if not form.get("api_key") or not form.get("api_secret"):
        return sms_error("2", f"Missing {'api_key' if not form.get('api_key') else 'api_secret'}")
    if not (
        secrets.compare_digest(form["api_key"], api_key)
        and secrets.compare_digest(form["api_secret"], api_secret)
    ):
        return sms_error("4")
    for name in ("from", "to", "text"):
        if not form.get(name):
            return sms_error("2", f"Missing {name} param")
    to, sender, text = form["to"], form["from"], form["text"]
    if not NUMBER.fullmatch(to):
        return sms_error("3", "Invalid to address")
    if not (NUMBER.fullmatch(sender) or ALPHA_SENDER.fullmatch(sender)):
        return sms_error("15")
    kind = form.get("type", "text")
    if kind not in ("text", "unicode", "binary"):
        return sms_error("3", "Invalid message type")
    ref = form.get("client-ref")
    if ref is not None and len(ref) > 100:
        return sms_error("3", "Invalid client-ref: longer than 100 characters")
    single, part = (70, 67) if kind == "unicode" else (160, 153)
    count = 1 if len(text) <= single else -(-len(text) // part)
    if count > 20:
        return sms_error("12")
    parts = [
        {
            "to": to,
            "message-id": secrets.token_hex(8).upper(),
            "status": "0",
            "remaining-balance": "10.00000000",
            "message-price": "0.03330000",
            "network": "310260",
            **({"client-ref": ref} if ref is not None else {}),
        }
        for _ in range(count)
    ]
    fields = {
        "to": to,
        "message_id": parts[0]["message-id"],
        "notification_id": ref,
        "from": sender,
        "text": text,
        "type": kind,
        "parts": count,
    }
    return 200, {"message-count": str(count), "messages": parts}, {}, fields


@dataclass
class VonageApplications:
    """Registered Vonage applications: the public keys their call JWTs are verified with."""

    _keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, application_id: str, public_key_pem: str) -> None:
        """Accept call JWTs of `application_id` signed by this key."""
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("a Vonage application key is RSA")
        with self._lock:
            self._keys[application_id] = key

    def verify(self, authorization: str | None) -> str | None:
        """Why the request's JWT is refused, or None when it is good."""
        if not authorization or not authorization.startswith("Bearer "):
            return "no Bearer token"
        token = authorization[7:]
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return "malformed JWT"
        if header.get("alg") != "RS256":
            return "alg must be RS256"
        with self._lock:
            key = self._keys.get(str(unverified.get("application_id")))
        if key is None:
            return "unknown application_id"
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"require": ["iat", "jti"]},
                leeway=CLOCK_SKEW_S,
            )
        except jwt.InvalidTokenError as exc:
            return f"invalid JWT: {exc}"
        # PyJWT checked exp and that iat is not in the future; without exp, Vonage's default
        if "exp" not in claims and claims["iat"] + DEFAULT_LIFETIME_S < time.time():
            return "expired"
        return None


def _endpoint(value: Any, name: str) -> str | None:
    """Why a phone endpoint is refused, or None."""
    if not isinstance(value, dict) or value.get("type") != "phone":
        return f"{name} must be an endpoint of type phone"
    if not NUMBER.fullmatch(str(value.get("number", ""))):
        return f"{name}.number must be E.164 digits without '+'"
    return None


def _ncco(ncco: Any) -> str | None:
    if not isinstance(ncco, list) or not ncco:
        return "ncco must be a non-empty array of actions"
    for i, action in enumerate(ncco):
        if not isinstance(action, dict) or action.get("action") not in NCCO_ACTIONS:
            return f"ncco[{i}].action must be one of {', '.join(sorted(NCCO_ACTIONS))}"
        if action["action"] == "talk" and not str(action.get("text") or ""):
            return f"ncco[{i}].text is required for talk"
    return None


def voice(apps: VonageApplications, authorization: str | None, payload: Any) -> Reply:
    """POST /v1/calls: an outbound call to a phone, with an NCCO or an answer_url."""
    refused = apps.verify(authorization)
    if refused is not None:
        status, body, headers, _ = problem(
            401, "Unauthorized", "You did not provide correct credentials."
        )
        return status, body, headers, {"refused": refused}

    def invalid(name: str, reason: str) -> Reply:
        return problem(
            400,
            "Bad Request",
            "The request failed due to validation errors",
            invalid_parameters=[{"name": name, "reason": reason}],
        )

    if not isinstance(payload, dict):
        return invalid("body", "the body must be a JSON object")
    to = payload.get("to")
    if not isinstance(to, list) or not to:
        return invalid("to", "to must be a non-empty array of endpoints")
    for i, endpoint in enumerate(to):
        reason = _endpoint(endpoint, f"to[{i}]")
        if reason:
            return invalid("to", reason)
    if not payload.get("random_from_number"):
        reason = _endpoint(payload.get("from"), "from")
        if reason:
            return invalid("from", reason)
    has_ncco, has_url = "ncco" in payload, "answer_url" in payload
    if has_ncco == has_url:
        return invalid("ncco", "exactly one of ncco and answer_url is required")
    if has_ncco:
        reason = _ncco(payload["ncco"])
        if reason:
            return invalid("ncco", reason)
    call = str(uuid.uuid4())
    reply = {
        "uuid": call,
        "status": "started",
        "direction": "outbound",
        "conversation_uuid": f"CON-{uuid.uuid4()}",
    }
    number = str(to[0]["number"])
    sender = (payload.get("from") or {}).get("number")
    return (
        201,
        reply,
        {},
        {"to": number, "message_id": call, "from": sender, "ncco": payload.get("ncco")},
    )
