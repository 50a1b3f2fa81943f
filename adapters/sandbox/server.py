"""The sandbox servers: one aiohttp app for every HTTP provider and the control API, and an
SMTP server (aiosmtpd), on one event loop.

Routes (base URLs the adapters are pointed at):
  /twilio/2010-04-01/Accounts/{sid}/Messages.json|Calls.json  Twilio
  /sendgrid/v3/mail/send                                       SendGrid
  /fcm/v1/projects/{project}/messages:send                     FCM HTTP v1
  /google/token                                                Google OAuth2 (service accounts)
  /slack/api/chat.postMessage                                  Slack Web API
  /slack/actions/{team}/{hook}/{token}                         Slack response_url of a click
  /vonage/rest/sms/json                                        Vonage SMS API
  /vonage/api/v1/calls                                         Vonage Voice API
  /teams/webhook/{id}                                          Teams incoming webhook
  /hooks/{id}                                                  generic webhook receiver

Control API:
  GET|DELETE /_sandbox/requests, GET /_sandbox/stats        what was received; forget it
  PUT|DELETE /_sandbox/faults/{provider}                    inject failures
  PUT /_sandbox/google/service-accounts                     accept a service account's key
  PUT /_sandbox/vonage/applications                         accept a Vonage application's key
  POST /_sandbox/callbacks                                  a Twilio status callback or SendGrid
                                                            event, signed as the provider signs
  POST /_sandbox/interact                                   a user's Slack button click or keys
                                                            pressed in a Twilio call, signed
  POST /_sandbox/twilio/inbound                             an SMS a person sends to our number
                                                            (a reply), posted to the number's
                                                            incoming-message webhook, signed
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.bridge.signatures import sendgrid_sign, slack_signature, twilio_signature
from adapters.sandbox import providers, spec_validation, vonage
from adapters.sandbox.google_oauth import TokenIssuer
from adapters.sandbox.providers import Reply, SandboxCredentials
from adapters.sandbox.state import Fault, Recorded, SandboxState

STATE: web.AppKey[SandboxState] = web.AppKey("state", SandboxState)
CREDS: web.AppKey[SandboxCredentials] = web.AppKey("creds", SandboxCredentials)
SIGNING: web.AppKey[str] = web.AppKey("signing", str)
ISSUER: web.AppKey[TokenIssuer] = web.AppKey("issuer", TokenIssuer)
VONAGE_APPS: web.AppKey[vonage.VonageApplications] = web.AppKey(
    "vonage_apps", vonage.VonageApplications
)
HANG_S = 3600.0
FCM_CODES = {
    400: "INVALID_ARGUMENT",
    401: "THIRD_PARTY_AUTH_ERROR",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
}


def _fault_reply(provider: str, fault: Fault, path: str) -> Reply:
    code = fault.code
    if provider == "vonage":
        return vonage.fault_reply(path, fault.status, code)
    if provider == "twilio":
        return (
            fault.status,
            {"code": int(code or 20500), "message": "Injected failure", "status": fault.status},
            {},
            {},
        )
    if provider == "slack" and code:
        return 200, {"ok": False, "error": code}, {}, {}
    if provider == "fcm":
        # FCM names the error by its status: pick the code a real failure would carry
        error_code = code or FCM_CODES.get(fault.status, "UNAVAILABLE")
        return (
            fault.status,
            {
                "error": {
                    "code": fault.status,
                    "message": "Injected failure",
                    "status": error_code,
                    "details": [{"errorCode": error_code}],
                }
            },
            {},
            {},
        )
    headers = {"Retry-After": "1"} if fault.status == 429 else {}
    return fault.status, {"errors": [{"message": "Injected failure"}]}, headers, {}


async def _serve(request: web.Request, provider: str, handle: Any) -> web.StreamResponse:
    state = request.app[STATE]
    rec = state.start(provider, request.path)
    fault = state.fault(provider)
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.hang:
        rec.fault = "hang"
        await state.hang(HANG_S)
        rec.finished_at = time.time()
        return web.Response(status=503, text="released from hang")
    if fault.drop:
        rec.fault = "drop"
        if request.transport is not None:
            request.transport.close()
        rec.finished_at = time.time()
        return web.Response(status=500)
    body = await request.read()
    status, payload, headers, fields = handle(body)
    if fault.should_fail(state.rng):
        rec.fault = "injected"  # the ids in the request are still recorded
        status, payload, headers, _ = _fault_reply(provider, fault, request.path)
        if fault.retry_after is not None:
            headers = {**headers, "Retry-After": str(fault.retry_after)}
        fields = {k: v for k, v in fields.items() if k != "message_id"}
    rec.status = status
    rec.summary = {
        k: v
        for k, v in fields.items()
        if k not in ("to", "message_id", "notification_id", "incident_id")
    }
    rec.to = fields.get("to")
    rec.message_id = fields.get("message_id")
    rec.notification_id = fields.get("notification_id") or request.query.get("n")
    rec.incident_id = fields.get("incident_id")
    rec.finished_at = time.time()
    if isinstance(payload, bytes):
        return web.Response(status=status, body=payload, headers=headers)
    if isinstance(payload, str):
        return web.Response(status=status, text=payload, headers=headers)
    return web.json_response(payload, status=status, headers=headers)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


async def twilio(request: web.Request) -> web.StreamResponse:
    """Twilio Messages and Calls."""
    creds = request.app[CREDS]
    account, resource = request.match_info["sid"], request.match_info["resource"]

    def handle(body: bytes) -> Reply:
        status, payload, headers, fields = providers.twilio(
            creds, account, resource, request.headers.get("Authorization"), body
        )
        fields.setdefault("notification_id", request.query.get("n"))
        callback = fields.get("status_callback")
        if callback:
            # urllib reads the query at a fifth of httpx.URL's cost
            query = parse_qs(urlsplit(callback).query, keep_blank_values=True)
            fields["notification_id"] = query.get("n", [None])[0]
            fields["incident_id"] = query.get("i", [None])[0]
        return status, payload, headers, fields

    return await _serve(request, "twilio", handle)


async def sendgrid(request: web.Request) -> web.StreamResponse:
    """SendGrid v3 mail send."""
    creds = request.app[CREDS]
    return await _serve(
        request,
        "sendgrid",
        lambda body: providers.sendgrid(creds, request.headers.get("Authorization"), _json(body)),
    )


async def fcm(request: web.Request) -> web.StreamResponse:
    """FCM HTTP v1 send: the sandbox's static token, or one minted by its token endpoint."""
    creds = request.app[CREDS]
    project = request.match_info["project"]
    minted = request.app[ISSUER].valid
    return await _serve(
        request,
        "fcm",
        lambda body: providers.fcm(
            creds, project, request.headers.get("Authorization"), _json(body), minted
        ),
    )


async def google_token(request: web.Request) -> web.StreamResponse:
    """Google's OAuth2 token endpoint: a service account's signed assertion for a token."""
    issuer = request.app[ISSUER]
    return await _serve(request, "google", issuer.token)


async def register_service_account(request: web.Request) -> web.Response:
    """PUT /_sandbox/google/service-accounts {client_email, public_key_pem,
    token_lifetime_s?}: the token endpoint accepts assertions signed by that key."""
    try:
        found = await request.json()
        request.app[ISSUER].register(
            str(found["client_email"]),
            str(found["public_key_pem"]),
            found.get("token_lifetime_s"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad service account: {exc}") from exc
    return web.json_response({"registered": found["client_email"]})


async def slack(request: web.Request) -> web.StreamResponse:
    """Slack chat.postMessage."""
    creds = request.app[CREDS]
    return await _serve(
        request,
        "slack",
        lambda body: providers.slack(creds, request.headers.get("Authorization"), _json(body)),
    )


async def slack_response(request: web.Request) -> web.StreamResponse:
    """A click's response_url: the app may post a reply or replace the message."""

    def handle(body: bytes) -> Reply:
        payload = _json(body)
        if not isinstance(payload, dict):
            return 400, "invalid_payload", {}, {}
        return 200, {"ok": True}, {}, {"text": payload.get("text")}

    return await _serve(request, "slack_response", handle)


async def vonage_sms(request: web.Request) -> web.StreamResponse:
    """Vonage SMS API: POST /sms/json."""
    creds = request.app[CREDS]
    query = dict(request.query)
    ctype = request.headers.get("Content-Type", "")
    return await _serve(
        request,
        "vonage",
        lambda body: vonage.sms(creds.vonage_api_key, creds.vonage_api_secret, query, body, ctype),
    )


async def vonage_voice(request: web.Request) -> web.StreamResponse:
    """Vonage Voice API: POST /v1/calls with an application JWT."""
    apps = request.app[VONAGE_APPS]
    return await _serve(
        request,
        "vonage",
        lambda body: vonage.voice(apps, request.headers.get("Authorization"), _json(body)),
    )


async def register_vonage_application(request: web.Request) -> web.Response:
    """PUT /_sandbox/vonage/applications {application_id, public_key_pem}: the Voice API
    accepts call JWTs of that application signed by its private key."""
    try:
        found = await request.json()
        request.app[VONAGE_APPS].register(
            str(found["application_id"]), str(found["public_key_pem"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad application: {exc}") from exc
    return web.json_response({"registered": found["application_id"]})


async def teams(request: web.Request) -> web.StreamResponse:
    """Teams incoming webhook."""
    return await _serve(request, "teams", lambda body: providers.teams(_json(body)))


async def hooks(request: web.Request) -> web.StreamResponse:
    """Generic webhook receiver."""
    secret = request.app[SIGNING] or None
    return await _serve(
        request, "webhook", lambda body: providers.webhook(dict(request.headers), body, secret)
    )


async def list_requests(request: web.Request) -> web.Response:
    """GET /_sandbox/requests[?provider=&notification_id=]"""
    return web.json_response(
        request.app[STATE].as_json(
            request.query.get("provider"), request.query.get("notification_id")
        )
    )


async def stats(request: web.Request) -> web.Response:
    """GET /_sandbox/stats: how many requests were received and answered, per provider."""
    count, by_provider = request.app[STATE].counts()
    return web.json_response({"count": count, "by_provider": by_provider})


async def reset(request: web.Request) -> web.Response:
    """DELETE /_sandbox/requests: forget requests and faults."""
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def set_fault(request: web.Request) -> web.Response:
    """PUT /_sandbox/faults/{provider} with Fault fields; DELETE clears it."""
    state = request.app[STATE]
    provider = request.match_info["provider"]
    if request.method == "DELETE":
        state.faults.pop(provider, None)
        return web.json_response({"cleared": provider})
    try:
        fault = Fault(**(await request.json()))
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad fault: {exc}") from exc
    state.faults[provider] = fault
    return web.json_response({"provider": provider, "fault": fault.__dict__})


def _recorded(state: SandboxState, message_id: Any) -> Recorded:
    sent = next((r for r in state.requests if r.message_id == message_id), None)
    if sent is None or not message_id:
        raise web.HTTPNotFound(text="no such message")
    return sent


async def _post(url: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        raise web.HTTPBadGateway(text=f"could not post to {url}: {exc!r}") from None


def _sendgrid_events(events: list[dict[str, Any]]) -> bytes:
    # SendGrid puts each event on its own line and ends the body with CRLF; the bytes are signed
    lines = ",\r\n".join(json.dumps(e, separators=(",", ":")) for e in events)
    return f"[{lines}]\r\n".encode()


async def send_callback(request: web.Request) -> web.Response:
    """POST /_sandbox/callbacks {"message_id", "status", "url"?}: post the provider's status
    callback for a message it sent, signed as the provider signs it."""
    state, creds = request.app[STATE], request.app[CREDS]
    ask = await request.json()
    sent = _recorded(state, ask.get("message_id"))
    async with httpx.AsyncClient(timeout=10) as client:
        if sent.provider == "twilio":
            url = ask.get("url") or sent.summary.get("status_callback")
            if not url:
                raise web.HTTPBadRequest(text="message had no StatusCallback and no url given")
            is_call = str(sent.message_id).startswith("CA")
            params = {
                "AccountSid": creds.twilio_account_sid,
                "To": sent.to or "",
                "MessageStatus" if not is_call else "CallStatus": ask["status"],
                "MessageSid" if not is_call else "CallSid": str(sent.message_id),
            }
            if ask.get("error_code"):
                params["ErrorCode"] = str(ask["error_code"])
            response = await client.post(
                url,
                data=params,
                headers={
                    "X-Twilio-Signature": twilio_signature(creds.twilio_auth_token, url, params)
                },
            )
        elif sent.provider == "sendgrid":
            url = ask.get("url")
            if not url:
                raise web.HTTPBadRequest(text="url is needed for SendGrid events")
            now = int(time.time())
            event: dict[str, Any] = {
                # custom_args of the send come back as top-level fields of each event
                **sent.summary.get("custom_args", {}),
                "email": sent.to,
                "timestamp": now,
                "event": ask["status"],
                "sg_event_id": secrets.token_urlsafe(16),
                "sg_message_id": f"{sent.message_id}.filter0001.1.0",
                "notification_id": sent.notification_id,
                "incident_id": sent.incident_id,
            }
            if ask.get("reason"):
                event["reason"] = str(ask["reason"])
            body = _sendgrid_events([event])
            key, _ = creds.sendgrid_event_keys()
            response = await client.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json;charset=utf-8",
                    "User-Agent": "SendGrid Event API",
                    "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(key, str(now), body),
                    "X-Twilio-Email-Event-Webhook-Timestamp": str(now),
                },
            )
        else:
            raise web.HTTPBadRequest(text=f"{sent.provider} sends no status callbacks")
    return web.json_response({"posted_to": str(response.url), "status": response.status_code})


def _slack_click(sent: Recorded, button: dict[str, Any], origin: str) -> dict[str, Any]:
    """A block_actions payload as Slack posts it when a user clicks `button`."""
    channel, _, ts = str(sent.message_id).partition(":")
    # a message sent to a user lands in their DM: that user is the one who clicks
    user = sent.to if sent.to and sent.to[0] in "UW" else "U0SANDBOXUSER"
    team = {"id": "T0SANDBOX", "domain": "sandbox"}
    return {
        "type": "block_actions",
        "user": {
            "id": user,
            "username": user.lower(),
            "name": user.lower(),
            "team_id": team["id"],
        },
        "api_app_id": "A0SANDBOX",
        "container": {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"{secrets.randbelow(10**11)}.{secrets.randbelow(10**9)}."
        + secrets.token_hex(16),
        "team": team,
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "directmessage"},
        "message": {"type": "message", "ts": ts, "bot_id": "B0SANDBOX", "user": "U0SANDBOXBOT"},
        "state": {"values": {}},
        "response_url": f"{origin}/slack/actions/{team['id']}/{secrets.randbelow(10**12)}/"
        + secrets.token_urlsafe(18),
        "actions": [
            {
                "action_id": button.get("action_id"),
                "block_id": button.get("block_id"),
                "text": button.get("text"),
                "value": button.get("value"),
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


async def interact(request: web.Request) -> web.Response:
    """POST /_sandbox/interact {"message_id", "action"?, "digits"?, "url"?}: what a user does
    with a message: click its Slack button, or press keys during its Twilio call."""
    state, creds = request.app[STATE], request.app[CREDS]
    ask = await request.json()
    sent = _recorded(state, ask.get("message_id"))
    action = ask.get("action")
    url = ask.get("url")
    if sent.provider == "slack":
        if not url:
            raise web.HTTPBadRequest(text="url (the app's interactivity URL) is needed for Slack")
        wanted = action or "acknowledge"
        button = next(
            (b for b in sent.summary.get("actions", []) if b.get("action_id") == wanted), None
        )
        if button is None:
            raise web.HTTPBadRequest(text=f"the message has no {wanted!r} button")
        payload = _slack_click(sent, button, f"{request.scheme}://{request.host}")
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": slack_signature(creds.slack_signing_secret, ts, body),
        }
    elif sent.provider == "twilio" and str(sent.message_id).startswith("CA"):
        if action not in (None, "press", "acknowledge"):
            raise web.HTTPBadRequest(text="a call can only be answered with keys ('press')")
        url = url or sent.summary.get("gather_action")
        if not url:
            raise web.HTTPBadRequest(
                text="the call's TwiML has no <Gather action> and no url given"
            )
        caller = str(sent.summary.get("from") or "")
        params = {
            "AccountSid": creds.twilio_account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": str(sent.message_id),
            "CallStatus": "in-progress",
            "Called": sent.to or "",
            "Caller": caller,
            "Digits": str(ask.get("digits", "1")),
            "Direction": "outbound-api",
            "FinishedOnKey": "",
            "From": caller,
            "To": sent.to or "",
            "msg": "Gather End",
        }
        body = urlencode(params).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "X-Twilio-Signature": twilio_signature(creds.twilio_auth_token, url, params),
        }
    else:
        raise web.HTTPBadRequest(text=f"a {sent.provider} message has nothing to interact with")
    response = await _post(url, body, headers)
    return web.json_response(
        {"posted_to": str(response.url), "status": response.status_code, "body": response.text}
    )


async def twilio_inbound(request: web.Request) -> web.Response:
    """POST /_sandbox/twilio/inbound {"url", "body", "message_id"? | "from" and "to"?}: an SMS
    a person sends to our Twilio number, posted to the number's incoming-message webhook
    (`url`, what the Twilio console's "A message comes in" names) as Twilio posts it, signed
    with the account's auth token. With `message_id` (an SMS the sandbox sent) it is that
    SMS's recipient replying to its sender."""
    state, creds = request.app[STATE], request.app[CREDS]
    ask = await request.json()
    url = ask.get("url")
    if not url:
        raise web.HTTPBadRequest(text="url (the number's incoming-message webhook) is needed")
    if ask.get("message_id"):
        sent = _recorded(state, ask["message_id"])
        if sent.provider != "twilio" or not str(sent.message_id).startswith("SM"):
            raise web.HTTPBadRequest(text="only an SMS can be replied to")
        sender, ours = sent.to or "", str(sent.summary.get("from") or "")
    else:
        sender, ours = str(ask.get("from") or ""), str(ask.get("to") or "+14155550000")
    if not sender:
        raise web.HTTPBadRequest(text="from (the person's number) or message_id is needed")
    sid = "SM" + secrets.token_hex(16)
    text = str(ask.get("body", ""))
    # the fields Twilio posts for an incoming SMS (no media)
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": text,
        "FromCountry": "US",
        "To": ours,
        "ToZip": "",
        "NumSegments": str(max(1, -(-len(text) // 160))),
        "MessageSid": sid,
        "AccountSid": creds.twilio_account_sid,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    body = urlencode(params).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "TwilioProxy/1.1",
        "X-Twilio-Signature": twilio_signature(creds.twilio_auth_token, url, params),
    }
    response = await _post(url, body, headers)
    return web.json_response(
        {
            "posted_to": str(response.url),
            "status": response.status_code,
            "body": response.text,
            "message_sid": sid,
        }
    )


def build_app(
    state: SandboxState, creds: SandboxCredentials | None = None, webhook_signing_secret: str = ""
) -> web.Application:
    """The sandbox's HTTP application."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE] = state
    app[CREDS] = creds or SandboxCredentials()
    app[SIGNING] = webhook_signing_secret
    app[ISSUER] = TokenIssuer()
    app[VONAGE_APPS] = vonage.VonageApplications()
    app.router.add_post(r"/twilio/2010-04-01/Accounts/{sid}/{resource:Messages|Calls}.json", twilio)
    app.router.add_post("/sendgrid/v3/mail/send", sendgrid)
    app.router.add_post("/fcm/v1/projects/{project}/messages:send", fcm)
    app.router.add_post("/google/token", google_token)
    app.router.add_route("PUT", "/_sandbox/google/service-accounts", register_service_account)
    app.router.add_post("/slack/api/chat.postMessage", slack)
    app.router.add_post("/slack/actions/{team}/{hook}/{token}", slack_response)
    app.router.add_post("/vonage/rest/sms/json", vonage_sms)
    app.router.add_post("/vonage/api/v1/calls", vonage_voice)
    app.router.add_route("PUT", "/_sandbox/vonage/applications", register_vonage_application)
    app.router.add_post("/teams/webhook/{id}", teams)
    app.router.add_route("*", "/hooks/{id}", hooks)
    app.router.add_get("/_sandbox/requests", list_requests)
    app.router.add_delete("/_sandbox/requests", reset)
    app.router.add_get("/_sandbox/stats", stats)
    app.router.add_route("PUT", "/_sandbox/faults/{provider}", set_fault)
    app.router.add_route("DELETE", "/_sandbox/faults/{provider}", set_fault)
    app.router.add_post("/_sandbox/callbacks", send_callback)
    app.router.add_post("/_sandbox/interact", interact)
    app.router.add_post("/_sandbox/twilio/inbound", twilio_inbound)
    return app


class SmtpRecorder:
    """aiosmtpd handler: records each message; faults of provider 'smtp' apply."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain:
            return "550 5.1.1 Recipient address rejected: not a valid mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        rec = self.state.start("smtp", "DATA")
        fault = self.state.fault("smtp")
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.hang:
            rec.fault = "hang"
            await self.state.hang(HANG_S)
        if fault.should_fail(self.state.rng) or fault.drop:
            rec.fault = "injected"
            rec.status = fault.status if 400 <= fault.status < 600 else 451
            rec.finished_at = time.time()
            return f"{rec.status} 4.3.0 Injected failure"
        raw = envelope.original_content or envelope.content or b""
        msg = message_from_bytes(raw if isinstance(raw, bytes) else raw.encode())
        rec.to = envelope.rcpt_tos[0] if envelope.rcpt_tos else None
        rec.message_id = msg.get("Message-ID")
        rec.notification_id = msg.get("X-Notifier-Notification-Id")
        rec.incident_id = msg.get("X-Notifier-Incident-Id")
        text = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
        body = text.get_payload(decode=True) if text is not None else b""
        rec.summary = {
            "subject": msg.get("Subject"),
            "parts": [p.get_content_type() for p in msg.walk()],
            # the acknowledge/resolve links, as a person would click them
            "links": re.findall(r"https?://\S+/links/\S+", bytes(body).decode("utf-8", "replace")),
            "text": bytes(body).decode("utf-8", "replace"),
            "hrefs": re.findall(r'href="([^"]+)"', _html_of(msg)),
        }
        rec.status = 250
        rec.finished_at = time.time()
        return "250 2.0.0 OK: queued"


def _html_of(msg: Message) -> str:
    part = next((p for p in msg.walk() if p.get_content_type() == "text/html"), None)
    payload = part.get_payload(decode=True) if part is not None else b""
    return bytes(payload).decode("utf-8", "replace") if isinstance(payload, bytes) else ""


async def serve(
    host: str,
    port: int,
    smtp_port: int,
    *,
    webhook_signing_secret: str = "",
    ready: asyncio.Event | None = None,
    seed: int | None = None,
) -> None:
    """Run the HTTP and SMTP servers until cancelled."""
    state = SandboxState(seed)
    runner = web.AppRunner(
        build_app(state, webhook_signing_secret=webhook_signing_secret), access_log=None
    )
    await runner.setup()
    # a tenth of a second now rather than on the first request of each provider; a broken
    # schema file stops the sandbox here
    spec_validation.load_all()
    site = web.TCPSite(runner, host, port)
    await site.start()
    loop = asyncio.get_running_loop()
    handler = SmtpRecorder(state)
    smtp = await loop.create_server(lambda: SMTP(handler, hostname="sandbox"), host, smtp_port)
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        state.release_hangs()
        smtp.close()
        await runner.cleanup()


def sandbox_env(
    host: str, port: int, smtp_port: int, creds: SandboxCredentials | None = None
) -> dict[str, str]:
    """The notifier settings that point every adapter at this sandbox."""
    creds = creds or SandboxCredentials()
    base = f"http://{host}:{port}"
    _, sendgrid_public_key = creds.sendgrid_event_keys()
    return {
        "NOTIFIER_SMTP_HOST": host,
        "NOTIFIER_SMTP_PORT": str(smtp_port),
        "NOTIFIER_SENDGRID_BASE_URL": f"{base}/sendgrid",
        "NOTIFIER_SENDGRID_API_KEY": creds.sendgrid_api_key,
        "NOTIFIER_TWILIO_BASE_URL": f"{base}/twilio",
        "NOTIFIER_TWILIO_ACCOUNT_SID": creds.twilio_account_sid,
        "NOTIFIER_TWILIO_AUTH_TOKEN": creds.twilio_auth_token,
        "NOTIFIER_TWILIO_FROM": "+14155550000",
        # voice through Vonage also needs NOTIFIER_VONAGE_APPLICATION_ID and a private key
        # file whose public half is registered at /_sandbox/vonage/applications
        "NOTIFIER_VONAGE_SMS_BASE_URL": f"{base}/vonage/rest",
        "NOTIFIER_VONAGE_VOICE_BASE_URL": f"{base}/vonage/api",
        "NOTIFIER_VONAGE_API_KEY": creds.vonage_api_key,
        "NOTIFIER_VONAGE_API_SECRET": creds.vonage_api_secret,
        "NOTIFIER_VONAGE_FROM": "+14155550001",
        "NOTIFIER_FCM_BASE_URL": f"{base}/fcm",
        "NOTIFIER_FCM_PROJECT_ID": "sandbox-project",
        "NOTIFIER_FCM_ACCESS_TOKEN": creds.fcm_access_token,
        "NOTIFIER_SLACK_BASE_URL": f"{base}/slack/api",
        "NOTIFIER_SLACK_BOT_TOKEN": creds.slack_bot_token,
        # what the webhook bridge needs to verify the callbacks and clicks the sandbox signs
        "NOTIFIER_SLACK_SIGNING_SECRET": creds.slack_signing_secret,
        "NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_public_key,
    }
