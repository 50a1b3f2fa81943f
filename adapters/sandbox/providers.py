"""The provider endpoints the sandbox emulates, each with the provider's own validation and
response shape. Every handler returns (status, body, headers, recorded fields)."""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives.asymmetric import ec

from adapters.bridge.signatures import sendgrid_keypair_from_seed
from adapters.sandbox import spec_validation
from notifier.domain.tiers import is_e164

# parsing a number costs 25 us, twice a request; the same few numbers come again and again
_is_e164 = lru_cache(maxsize=4096)(is_e164)
# the ids the sandbox hands out need to be unique, not secret: a generator seeded once spares
# the system call secrets makes for each
_ids = random.Random()


def _hex_id(nbytes: int) -> str:
    return _ids.randbytes(nbytes).hex()


@lru_cache(maxsize=2)  # the text changes once a second
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


Reply = tuple[int, Any, dict[str, str], dict[str, Any]]


@dataclass(frozen=True)
class SandboxCredentials:
    """What the sandbox accepts as each provider's credentials."""

    twilio_account_sid: str = "ACsandbox00000000000000000000000000"
    twilio_auth_token: str = "sandbox-twilio-token"
    sendgrid_api_key: str = "SG.sandbox-key"
    vonage_api_key: str = "5a9d0c1e"
    vonage_api_secret: str = "sandbox-vonage-secret"
    fcm_access_token: str = "sandbox-fcm-token"
    slack_bot_token: str = "xoxb-sandbox-token"
    slack_signing_secret: str = "sandbox-slack-signing-secret"
    # the SendGrid event-signing key is derived from this, so no key literal is in the repository
    sendgrid_key_seed: bytes = b"notifier-sandbox-sendgrid-events"

    def sendgrid_event_keys(self) -> tuple[ec.EllipticCurvePrivateKey, str]:
        """The key SendGrid events are signed with, and its public half as base64 DER."""
        return sendgrid_keypair_from_seed(self.sendgrid_key_seed)


def _twilio_error(status: int, code: int, message: str) -> Reply:
    return (
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        {},
        {},
    )


@lru_cache(maxsize=64)  # a client sends the same header each time
def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _bearer(header: str | None) -> str | None:
    return header[7:] if header and header.startswith("Bearer ") else None


def twilio(
    creds: SandboxCredentials, account: str, resource: str, auth: str | None, body: bytes
) -> Reply:
    """POST /2010-04-01/Accounts/{sid}/Messages.json and Calls.json."""
    if (
        _basic(auth) != (creds.twilio_account_sid, creds.twilio_auth_token)
        or account != creds.twilio_account_sid
    ):
        return _twilio_error(401, 20003, "Authenticate")
    fields = parse_qs(body.decode(), keep_blank_values=True)
    # the published schema first (required To, and From for a call; types, enums, URLs)
    violation = spec_validation.twilio_violation(resource, fields)
    if violation is not None:
        return _twilio_error(
            400, violation.code or spec_validation.TWILIO_INVALID_PARAMETER, violation.message
        )
    # what the API refuses beyond its schema
    form = {k: v[0] for k, v in fields.items()}
    to, sender = form.get("To", ""), form.get("From", "")
    if resource == "Messages" and not sender:
        # the schema leaves From optional: a Messaging Service may stand in, not here
        return _twilio_error(400, 21603, "A 'From' phone number is required.")
    if not _is_e164(to):
        return _twilio_error(
            400, 21211, f"The 'To' number {to[:4]}... is not a valid phone number."
        )
    if not _is_e164(sender):
        return _twilio_error(400, 21212, "The 'From' number is not a valid phone number.")
    if resource == "Messages":
        text = form.get("Body", "")
        if not text:
            return _twilio_error(400, 21602, "Message body is required.")
        if len(text) > 1600:
            return _twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        sid = "SM" + _hex_id(16)
        extra: dict[str, Any] = {"body": text, "num_segments": str(-(-len(text) // 160))}
        # the sender: the number a reply goes to (/_sandbox/twilio/inbound)
        recorded: dict[str, Any] = {**extra, "from": sender}
    else:
        twiml = form.get("Twiml")
        if not twiml and not form.get("Url"):
            return _twilio_error(400, 21205, "Url or Twiml parameter is required.")
        gather = None
        if twiml:
            try:
                root = ET.fromstring(twiml)
                if root.tag != "Response":
                    raise ET.ParseError("root is not <Response>")
            except ET.ParseError as exc:
                return _twilio_error(400, 12100, f"Document parse failure: {exc}")
            gather = root.find(".//Gather")
        sid = "CA" + _hex_id(16)
        extra = {}
        # where Twilio would post the keys pressed, for /_sandbox/interact
        recorded = {
            "twiml": twiml,
            "from": sender,
            "gather_action": gather.get("action") if gather is not None else None,
        }
    reply = {
        "sid": sid,
        "account_sid": account,
        "to": to,
        "from": sender,
        "status": "queued",
        "date_created": _http_date(int(time.time())),
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account}/{resource}/{sid}.json",
    }
    reply.update(extra)
    return (
        201,
        reply,
        {},
        {"to": to, "message_id": sid, "status_callback": form.get("StatusCallback"), **recorded},
    )


def _sg_error(status: int, message: str, field: str | None = None) -> Reply:
    return status, {"errors": [{"message": message, "field": field, "help": None}]}, {}, {}


def sendgrid(creds: SandboxCredentials, auth: str | None, payload: Any) -> Reply:
    """POST /v3/mail/send."""
    if _bearer(auth) != creds.sendgrid_api_key:
        return _sg_error(401, "The provided authorization grant is invalid, expired, or revoked")
    if payload is None:
        return _sg_error(400, "Bad Request", None)
    # the published schema first (types, required fields, addresses, custom_args' types)
    violation = spec_validation.sendgrid_violation(payload)
    if violation is not None:
        return _sg_error(400, violation.message, violation.field or None)
    # what the API refuses beyond its schema
    people = payload["personalizations"]
    if not people:
        return _sg_error(
            400,
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    to = [t["email"] for p in people for t in p["to"]]
    if not to:
        return _sg_error(400, "Does not contain a valid address.", "personalizations.0.to")
    # the sandbox has no templates, so a subject and a content are needed
    if not payload.get("subject"):
        return _sg_error(400, "The subject is required.", "subject")
    content = payload.get("content")
    if not content:
        return _sg_error(400, "Content must have a type and a value.", "content")
    message_id = base64.urlsafe_b64encode(_ids.randbytes(16)).decode()[:22]
    args = people[0].get("custom_args") or {}
    return (
        202,
        b"",
        {"X-Message-Id": message_id},
        {
            "to": to[0],
            "message_id": message_id,
            "subject": payload["subject"],
            "notification_id": args.get("notification_id"),
            "incident_id": args.get("incident_id"),
            "custom_args": args,
            "content_types": [c["type"] for c in content],
            "text": next((c["value"] for c in content if c["type"] == "text/plain"), None),
            "hrefs": re.findall(
                r'href="([^"]+)"',
                next((str(c["value"]) for c in content if c["type"] == "text/html"), ""),
            ),
        },
    )


def _fcm_error(status: int, state: str, message: str, code: str | None = None) -> Reply:
    details = (
        [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
        if code
        else []
    )
    return (
        status,
        {"error": {"code": status, "message": message, "status": state, "details": details}},
        {},
        {},
    )


def _fcm_bad_request(violation: spec_validation.Violation) -> Reply:
    # how Google's front end answers a body its JSON parser refuses: a google.rpc.BadRequest
    # naming the field, no FcmError
    violations = [{"field": violation.field, "description": violation.message}]
    return (
        400,
        {
            "error": {
                "code": 400,
                "message": violation.message,
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": violations,
                    }
                ],
            }
        },
        {},
        {},
    )


def fcm(
    creds: SandboxCredentials,
    project: str,
    auth: str | None,
    payload: Any,
    minted: Callable[[str], bool] = lambda token: False,
) -> Reply:
    """POST /v1/projects/{project}/messages:send. Tokens starting 'stale-' are unregistered.
    The bearer is the static sandbox token or one `minted` (by the OAuth2 endpoint) and
    not expired."""
    bearer = _bearer(auth) or ""
    if bearer != creds.fcm_access_token and not minted(bearer):
        return _fcm_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            "THIRD_PARTY_AUTH_ERROR",
        )
    # the published schema first (unknown names, types, enums such as Android's priority)
    violation = spec_validation.fcm_violation(payload)
    if violation is not None:
        return _fcm_bad_request(violation)
    message = payload["message"]
    targets = [k for k in ("token", "topic", "condition") if message.get(k)]
    if len(targets) != 1:
        return _fcm_error(
            400,
            "INVALID_ARGUMENT",
            "Exactly one of token, topic or condition must be given.",
            "INVALID_ARGUMENT",
        )
    token = str(message.get("token", ""))
    if token.startswith("stale-"):
        return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
    note = message.get("notification") or {}
    data = message.get("data") or {}
    name = f"projects/{project}/messages/0:{int(time.time() * 1000)}%{_hex_id(8)}"
    return (
        200,
        {"name": name},
        {},
        {
            "to": token,
            "message_id": name,
            "notification_id": data.get("notification_id"),
            "incident_id": data.get("incident_id"),
            "title": note.get("title"),
            "body": note.get("body"),
            "data": data,
        },
    )


def slack(creds: SandboxCredentials, auth: str | None, payload: Any) -> Reply:
    """POST /api/chat.postMessage; errors come as 200 {ok: false}, as Slack does."""

    def err(code: str) -> Reply:
        return 200, {"ok": False, "error": code}, {}, {}

    if _bearer(auth) is None:
        return err("not_authed")
    if _bearer(auth) != creds.slack_bot_token:
        return err("invalid_auth")
    if not isinstance(payload, dict):
        return err("invalid_arguments")
    channel = str(payload.get("channel", ""))
    if not channel or channel[0] not in "UCDGW" or channel.startswith("UNKNOWN"):
        return err("channel_not_found")
    blocks = payload.get("blocks") or []
    if not payload.get("text") and not blocks:
        return err("no_text")
    if len(blocks) > 50 or any(not isinstance(b, dict) or "type" not in b for b in blocks):
        return err("invalid_blocks")
    ts = f"{time.time():.6f}"
    dm = "D" + channel[1:]
    # what a click sends back (/_sandbox/interact): each button's ids, its block and value
    actions = [
        {
            "action_id": e.get("action_id"),
            "block_id": b.get("block_id"),
            "value": e.get("value"),
            "type": e.get("type"),
            "text": e.get("text"),
        }
        for b in blocks
        if b.get("type") == "actions"
        for e in b.get("elements", [])
    ]
    buttons = [a["action_id"] for a in actions]
    # what the person reads: the text of every text-bearing block, links as mrkdwn has them
    texts = [
        str(t.get("text", ""))
        for b in blocks
        for t in ([b["text"]] if isinstance(b.get("text"), dict) else b.get("elements", []))
        if isinstance(t, dict) and t.get("type") in ("mrkdwn", "plain_text")
    ]
    value = next((a["value"] for a in actions), None)
    ids = str(value).split("|") if value else [None, None]
    return (
        200,
        {
            "ok": True,
            "channel": dm,
            "ts": ts,
            "message": {"type": "message", "text": payload.get("text"), "ts": ts},
        },
        {},
        {
            "to": channel,
            "message_id": f"{dm}:{ts}",
            "buttons": buttons,
            "actions": actions,
            "texts": texts,
            "incident_id": ids[0],
            "notification_id": ids[1] if len(ids) > 1 else None,
        },
    )


def teams(payload: Any) -> Reply:
    """POST to an incoming webhook: a message with one Adaptive Card attachment."""
    bad: Reply = (400, "Bad payload received by generic incoming webhook.", {}, {})
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return bad
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return bad
    card = attachments[0]
    if (
        card.get("contentType") != "application/vnd.microsoft.card.adaptive"
        or card.get("content", {}).get("type") != "AdaptiveCard"
    ):
        return bad
    # the card itself against Microsoft's published Adaptive Card schema
    if spec_validation.adaptive_card_violation(card["content"]) is not None:
        return bad
    texts = [b.get("text") for b in card["content"].get("body", [])]
    # the card's buttons, as a person would click them
    actions = [
        {"title": a.get("title"), "url": a.get("url")}
        for a in card["content"].get("actions", [])
        if isinstance(a, dict) and a.get("type") == "Action.OpenUrl"
    ]
    links = {str(a["title"]): a["url"] for a in actions}
    title = texts[0] if texts else None
    return 200, "1", {}, {"title": title, "texts": texts, "links": links, "actions": actions}


def webhook(headers: dict[str, str], body: bytes, signing_secret: str | None) -> Reply:
    """A generic receiver: checks our signature when it knows the secret, records the rest."""
    from adapters.webhook import SIGNATURE_HEADER, sign

    headers = {k.lower(): v for k, v in headers.items()}  # HTTP header names ignore case
    signature = headers.get(SIGNATURE_HEADER.lower())
    if signing_secret:
        try:
            parts = dict(p.split("=", 1) for p in (signature or "").split(","))
            expected = sign(signing_secret, int(parts["t"]), body)
        except (KeyError, ValueError):
            return 401, {"error": "missing or malformed signature"}, {}, {}
        if not secrets.compare_digest(expected, signature or ""):
            return 401, {"error": "bad signature"}, {}, {}
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, {"error": "body is not JSON"}, {}, {}
    request_id = "req-" + _hex_id(8)
    return (
        200,
        {"received": True},
        {"X-Request-Id": request_id},
        {
            "message_id": request_id,
            "notification_id": payload.get("notification_id"),
            "incident_id": payload.get("incident_id"),
            "signed": bool(signature),
            "payload": payload,
            "authorization": "bearer"
            if headers.get("authorization", "").startswith("Bearer ")
            else ("api-key" if "x-api-key" in headers else "none"),
        },
    )
