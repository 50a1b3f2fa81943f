"""The webhook bridge: providers' status callbacks and people's acknowledgements in, Kafka
records out.

Every request goes the same way: verify its signature (401 without one, 403 when it is
wrong, stale or a replay), archive it as received on `callbacks.raw`, parse it (400 when it
cannot be understood), publish what it means, and only then answer 2xx, so a provider whose
callback was not acknowledged by Kafka (503) sends it again.

  POST /twilio/status        Twilio SMS and call status callbacks (X-Twilio-Signature)
  POST /twilio/gather        keys pressed during a voice call: 1 acknowledges
  POST /twilio/sms           SMS sent to our number: "1" or "ACK <code>" acknowledges
  POST /sendgrid/events      SendGrid signed event webhook (ECDSA)
  POST /slack/actions        Slack interactivity: Acknowledge / Resolve buttons (v0 signature)
  GET  /links/{token}        confirmation page of a one-time link (email, Teams card)
  POST /links/{token}        performs the link's action, once
  POST /webhook/receipts     delivery receipts from webhook receivers (X-Notifier-Signature)
  GET  /healthz /readyz /metrics
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import html
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import psycopg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import SecretStr

from adapters.bridge import parse
from adapters.bridge.parse import MalformedRequestError
from adapters.bridge.publisher import AsyncPublisher
from adapters.bridge.signatures import (
    SignatureError,
    verify_notifier,
    verify_sendgrid,
    verify_slack,
    verify_twilio,
)
from adapters.bridge.store import BridgeStore, LinkRefusedError, token_hash
from adapters.webhook import SIGNATURE_HEADER
from notifier.contracts.records import (
    IncidentAcknowledged,
    IncidentResolved,
    RawCallback,
    Record,
)
from notifier.domain import ids, sms_reply
from notifier.settings import Settings

log = logging.getLogger("notifier.bridge")
REQUESTS = Counter(
    "notifier_bridge_requests_total",
    "Requests to the webhook bridge by source and outcome.",
    ["source", "outcome"],
)
Outgoing = list[tuple[str, str, Record]]
# headers worth archiving: what a parser or an auditor needs, no credentials
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-twilio-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-twilio-email-event-webhook-signature",
    "x-twilio-email-event-webhook-timestamp",
    SIGNATURE_HEADER.lower(),
)


@dataclass(frozen=True)
class Incoming:
    """A request as the bridge keeps it: read once, parsed by the route."""

    source: str
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime

    @property
    def form(self) -> dict[str, str]:
        """The body as form fields (Twilio, Slack)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    @property
    def query(self) -> dict[str, str]:
        """Query parameters of the URL."""
        return dict(parse_qsl(self.url.partition("?")[2], keep_blank_values=True))


def _gather(req: Incoming) -> list[Record]:
    ack = parse.twilio_gather(req.query, req.form, req.received_at)
    return [ack] if ack else []


# sources whose records are people's acknowledgements, not provider reports
ACK_SOURCES = frozenset({"slack_actions", "twilio_gather"})
# what each verified source means; the routes and `reparse` share them
PARSERS: dict[str, Callable[[Incoming], Sequence[Record]]] = {
    "twilio_status": lambda req: [parse.twilio_status(req.query, req.form, req.received_at)],
    "twilio_gather": _gather,
    "sendgrid_events": lambda req: parse.sendgrid_events(req.body, req.received_at),
    "slack_actions": lambda req: [parse.slack_action(req.form, req.received_at)],
    "webhook_receipt": lambda req: [parse.webhook_receipt(req.body, req.received_at)],
}


def reparse(raw: RawCallback) -> Sequence[Record]:
    """What an archived request means to today's parsers (MalformedRequestError if
    nothing); email links are not parsed again: their action was taken when used."""
    parser = PARSERS.get(raw.source)
    if parser is None:
        return []
    return parser(
        Incoming(raw.source, raw.url, raw.method, dict(raw.headers), raw.body, raw.received_at)
    )


def outgoing(record: Record) -> tuple[str, str, Record]:
    """Where a parsed record goes: acknowledgements to incidents, callbacks to theirs."""
    topic = (
        "incidents"
        if isinstance(record, IncidentAcknowledged | IncidentResolved)
        else "provider.callbacks"
    )
    return topic, record.incident_id, record  # type: ignore[attr-defined]


class Bridge:
    """The routes, with their settings, store and publisher."""

    def __init__(
        self,
        settings: Settings,
        publisher: AsyncPublisher,
        store: BridgeStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.store = store
        self.clock = clock

    def public_url(self, request: web.Request) -> str:
        """The URL the provider called: what it signed, behind any proxy."""
        if self.settings.callback_base_url:
            return self.settings.callback_base_url.rstrip("/") + request.path_qs
        return str(request.url)

    async def incoming(self, request: web.Request, source: str) -> Incoming:
        """Read the request once."""
        return Incoming(
            source=source,
            url=self.public_url(request),
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items() if k.lower() in KEPT_HEADERS},
            body=await request.read(),
            received_at=datetime.fromtimestamp(self.clock(), UTC),
        )

    @staticmethod
    def replay_key(req: Incoming) -> str:
        """What makes two requests the same: where they went, when the provider says it sent
        them and what they said; not the signature's bytes, which some schemes let one
        rewrite without breaking it (ECDSA's (r, n-s), extra fields in ours)."""
        stamp = next(
            (v for k, v in req.headers.items() if k.endswith("timestamp")),
            "",
        )
        digest = hashlib.sha256(req.body).hexdigest()
        return f"{req.source}|{req.url}|{stamp}|{digest}"

    def archived(self, req: Incoming, url: str | None = None) -> tuple[str, str, Record]:
        """The raw request as it goes to callbacks.raw."""
        raw = RawCallback(
            event_id=str(uuid.uuid4()),
            received_at=req.received_at,
            source=req.source,
            method=req.method,
            url=url or req.url,
            headers=req.headers,
            body=req.body,
        )
        return "callbacks.raw", req.source, raw

    async def accept(
        self,
        req: Incoming,
        parser: Callable[[Incoming], Sequence[Record]],
        reply: Callable[[Sequence[Record]], web.StreamResponse],
    ) -> web.StreamResponse:
        """Refuse replays, archive, parse, publish, then answer."""
        replay_key = self.replay_key(req)
        if not await self.store.first_time(req.source, replay_key):
            return self.refuse(req.source, SignatureError("replayed request"))
        malformed: MalformedRequestError | None = None
        records: Sequence[Record] = []
        try:
            records = parser(req)
        except MalformedRequestError as exc:
            malformed = exc
        except Exception as exc:  # a parser bug: keep the request for a reparse after the fix
            log.exception("%s: parser failed", req.source)
            malformed = MalformedRequestError(f"not understood ({type(exc).__name__})")
        try:
            await self.publisher.publish([self.archived(req)] + [outgoing(r) for r in records])
        except Exception as exc:  # Kafka down, queue full, not encodable: nothing was taken
            await self.store.forget(replay_key)
            return self.unavailable(req.source, exc)
        if malformed is not None:
            REQUESTS.labels(req.source, "malformed").inc()
            log.warning("%s: %s", req.source, malformed.reason)
            raise web.HTTPBadRequest(text=malformed.reason)
        REQUESTS.labels(req.source, "accepted").inc()
        for record in records:
            log.info(
                "%s: %s",
                req.source,
                type(record).__name__,
                extra={
                    "incident_id": getattr(record, "incident_id", None),
                    "notification_id": getattr(record, "notification_id", None),
                },
            )
        return reply(records)

    def refuse(self, source: str, exc: SignatureError) -> web.StreamResponse:
        """401 or 403 with the reason; nothing was published."""
        REQUESTS.labels(source, "refused").inc()
        log.warning("%s refused: %s", source, exc.reason)
        return web.Response(status=exc.status, text=exc.reason)

    def unavailable(self, source: str, exc: Exception) -> web.StreamResponse:
        """503: Kafka did not take it; the provider will send it again."""
        REQUESTS.labels(source, "unavailable").inc()
        log.error("%s not published: %s", source, exc)
        return web.Response(status=503, text="not stored, try again")

    # --- providers ----------------------------------------------------------------------

    def _secret(self, value: SecretStr | None) -> str:
        # an unset secret verifies nothing: the verifiers refuse with "not configured"
        return value.get_secret_value() if value is not None else ""

    async def _signed(
        self,
        request: web.Request,
        source: str,
        header: str,
        verify: Callable[[Incoming, str | None], None],
        reply: Callable[[Sequence[Record]], web.StreamResponse],
    ) -> web.StreamResponse:
        """Verify the request's signature (in `header`), then accept it with its parser."""
        req = await self.incoming(request, source)
        signature = request.headers.get(header)
        try:
            verify(req, signature)
        except SignatureError as exc:
            return self.refuse(source, exc)
        return await self.accept(req, PARSERS[source], reply)

    async def twilio_status(self, request: web.Request) -> web.StreamResponse:
        """Twilio message or call status callback."""
        return await self._signed(
            request,
            "twilio_status",
            "X-Twilio-Signature",
            self._verify_twilio,
            lambda records: web.Response(status=204),
        )

    async def twilio_gather(self, request: web.Request) -> web.StreamResponse:
        """The digits pressed on a call; the answer is TwiML read to the caller."""

        def said(records: Sequence[Record]) -> web.StreamResponse:
            text = (
                "Thank you. The incident is acknowledged."
                if records
                else "No action taken. Press 1 to acknowledge."
            )
            return web.Response(
                text=f"<Response><Say>{text}</Say></Response>", content_type="application/xml"
            )

        return await self._signed(
            request, "twilio_gather", "X-Twilio-Signature", self._verify_twilio, said
        )

    async def twilio_sms(self, request: web.Request) -> web.StreamResponse:
        """An SMS to our number (Twilio's incoming-message webhook): "1" acknowledges the
        sender's only open incident, "ACK <code>" the one with that code. The answer is TwiML
        whose <Message> Twilio texts back: done, or why not and the codes to use."""
        req = await self.incoming(request, "twilio_sms")
        try:
            self._verify_twilio(req, request.headers.get("X-Twilio-Signature"))
        except SignatureError as exc:
            return self.refuse(req.source, exc)
        form = req.form
        sender = form.get("From", "").strip()
        people, open_incidents = await self.store.open_incidents_of(sender) if sender else ([], {})
        outcome = sms_reply.decide(
            sms_reply.parse_reply(form.get("Body", "")),
            bool(people),
            {incident: found.title for incident, found in open_incidents.items()},
        )

        def acknowledgement(req: Incoming) -> list[Record]:
            sid = form.get("MessageSid") or form.get("SmsSid")
            if not sid:
                raise MalformedRequestError("twilio sms: MessageSid is missing")
            if outcome.incident_id is None:
                return []
            alerted = open_incidents[outcome.incident_id].user_id
            return [
                IncidentAcknowledged(
                    event_id=ids.event_id("twilio-sms", sid),
                    occurred_at=req.received_at,
                    incident_id=outcome.incident_id,
                    by_user_id=alerted or (people[0] if len(people) == 1 else None),
                    via="sms",
                    note=f"SMS reply {sid}",
                )
            ]

        def message(records: Sequence[Record]) -> web.StreamResponse:
            return web.Response(
                text=f"<Response><Message>{escape(outcome.answer)}</Message></Response>",
                content_type="application/xml",
            )

        return await self.accept(req, acknowledgement, message)

    def _verify_twilio(self, req: Incoming, signature: str | None) -> None:
        tokens = [
            t.get_secret_value()
            for t in (self.settings.twilio_auth_token, self.settings.twilio_auth_token_previous)
            if t is not None
        ]
        verify_twilio(tokens, req.url, req.form, signature)

    async def sendgrid_events(self, request: web.Request) -> web.StreamResponse:
        """SendGrid's signed event webhook."""
        return await self._signed(
            request,
            "sendgrid_events",
            "X-Twilio-Email-Event-Webhook-Signature",
            lambda req, signature: verify_sendgrid(
                self.settings.sendgrid_webhook_public_key,
                request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
                req.body,
                signature,
                self.clock(),
                self.settings.request_max_age_s,
            ),
            lambda records: web.Response(status=200),
        )

    async def slack_actions(self, request: web.Request) -> web.StreamResponse:
        """Slack interactivity: a button of one of our messages was pressed."""
        return await self._signed(
            request,
            "slack_actions",
            "X-Slack-Signature",
            lambda req, signature: verify_slack(
                self._secret(self.settings.slack_signing_secret),
                request.headers.get("X-Slack-Request-Timestamp"),
                req.body,
                signature,
                self.clock(),
                self.settings.request_max_age_s,
            ),
            lambda records: web.Response(status=200),
        )

    async def webhook_receipt(self, request: web.Request) -> web.StreamResponse:
        """A delivery receipt from a generic webhook receiver, signed with our scheme."""
        return await self._signed(
            request,
            "webhook_receipt",
            SIGNATURE_HEADER,
            lambda req, signature: verify_notifier(
                self._secret(self.settings.webhook_signing_secret),
                signature,
                req.body,
                self.clock(),
                self.settings.request_max_age_s,
            ),
            lambda records: web.Response(status=204),
        )

    # --- email links ----------------------------------------------------------------------

    async def link_page(self, request: web.Request) -> web.StreamResponse:
        """GET shows what the link will do and asks to confirm: mail scanners that follow
        links must not acknowledge anything."""
        token = request.match_info["token"]
        try:
            link = await self.store.look(token)
        except LinkRefusedError as exc:
            REQUESTS.labels("link", "refused").inc()
            return _page(403, "Link not valid", exc.reason)
        verb = "Acknowledge" if link.action == "acknowledge" else "Resolve"
        return _page(
            200,
            f"{verb} incident {link.incident_id}?",
            f'<form method="post"><button type="submit">{verb}</button></form>',
            escaped=True,
        )

    async def link_action(self, request: web.Request) -> web.StreamResponse:
        """POST performs the link's one action, once; a second use is refused and says the
        link was already used."""
        token = request.match_info["token"]
        req = await self.incoming(request, "email_link")
        try:
            link = await self.store.use(token)
        except LinkRefusedError as exc:
            REQUESTS.labels("link", "refused").inc()
            log.warning("link refused: %s", exc.reason)
            return _page(403, "Link not valid", exc.reason)
        # the channel the link was sent on: an email, or a Teams card's button
        via = "teams_link" if link.channel == "TEAMS" else "email_link"
        req = dataclasses.replace(req, source=via)
        kind = IncidentAcknowledged if link.action == "acknowledge" else IncidentResolved
        record = kind(
            event_id=ids.event_id(via.replace("_", "-"), token_hash(token)),
            occurred_at=req.received_at,
            incident_id=link.incident_id,
            by_user_id=link.user_id,
            via=via,
            note=f"link from notification {link.notification_id}",
        )
        archived_url = req.url.replace(token, f"sha256:{token_hash(token)}")
        try:
            await self.publisher.publish([self.archived(req, archived_url), outgoing(record)])
        except Exception as exc:  # not published: the link can be used again
            await self.store.unuse(token)
            return self.unavailable(via, exc)
        REQUESTS.labels(via, "accepted").inc()
        log.info(
            "%s: %s",
            via,
            link.action,
            extra={"incident_id": link.incident_id, "notification_id": link.notification_id},
        )
        done = "acknowledged" if link.action == "acknowledge" else "resolved"
        return _page(200, f"Incident {link.incident_id} {done}", "Thank you.")

    # --- operations -----------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """Liveness: the process answers."""
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        """Readiness: PostgreSQL answers (Kafka is checked by every publish)."""
        try:
            await asyncio.wait_for(self.store.ping(), 5)
        except Exception as exc:
            return web.Response(status=503, text=f"PostgreSQL: {exc}")
        return web.Response(text="ready")

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """Prometheus text format."""
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _page(status: int, title: str, body: str, escaped: bool = False) -> web.Response:
    content = body if escaped else html.escape(body)
    return web.Response(
        status=status,
        content_type="text/html",
        text=(
            f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{content}</p></body></html>"
        ),
    )


@web.middleware
async def store_unavailable(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """PostgreSQL down (replay check, links): 503, so the provider sends it again later."""
    try:
        return await handler(request)
    except psycopg.Error as exc:
        REQUESTS.labels(request.path.split("/")[1] or "root", "unavailable").inc()
        log.error("state store unavailable for %s: %s", request.path.split("/")[1], exc)
        return web.Response(status=503, text="state store unavailable, try again")


def build_app(bridge: Bridge) -> web.Application:
    """The bridge's aiohttp application."""
    app = web.Application(client_max_size=1024 * 1024, middlewares=[store_unavailable])
    routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("POST", "/twilio/status", bridge.twilio_status),
        ("POST", "/twilio/gather", bridge.twilio_gather),
        ("POST", "/twilio/sms", bridge.twilio_sms),
        ("POST", "/sendgrid/events", bridge.sendgrid_events),
        ("POST", "/slack/actions", bridge.slack_actions),
        ("GET", "/links/{token}", bridge.link_page),
        ("POST", "/links/{token}", bridge.link_action),
        ("POST", "/webhook/receipts", bridge.webhook_receipt),
        ("GET", "/healthz", bridge.healthz),
        ("GET", "/readyz", bridge.readyz),
        ("GET", "/metrics", bridge.metrics),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run the bridge until cancelled."""
    from notifier.contracts.factory import build_codec
    from projections.database import database_url

    publisher = AsyncPublisher(settings, build_codec(settings))
    store = BridgeStore(database_url(settings))
    runner = web.AppRunner(build_app(Bridge(settings, publisher, store)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.bridge_host, settings.bridge_port).start()
    log.info("bridge listening on http://%s:%s", settings.bridge_host, settings.bridge_port)
    if ready is not None:
        ready.set()
    try:
        while True:
            await asyncio.sleep(3600)
            try:
                await store.prune(keep_s=7 * 24 * 3600)
            except Exception as exc:  # PostgreSQL away this hour: prune the next one
                log.warning("pruning old links and signatures failed: %s", exc)
    finally:
        await runner.cleanup()
        await store.close()
        publisher.close()
