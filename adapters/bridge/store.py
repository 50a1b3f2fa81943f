"""The bridge's state in PostgreSQL: one-time links (in emails and Teams cards) and the
signatures of requests already accepted (replay refusal). Tokens themselves are never
stored, only their SHA-256. It also reads who a phone number belongs to, and their open
incidents, from the read model (SMS replies)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

log = logging.getLogger("notifier.bridge.store")
ACTIONS = ("acknowledge", "resolve")


def token_hash(token: str) -> str:
    """Hex SHA-256 of a link token: what the table keeps and what archived URLs show."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Link:
    """What a link token allows."""

    action: str
    incident_id: str
    notification_id: str
    user_id: str
    expires_at: datetime
    used_at: datetime | None
    channel: str = "EMAIL"


@dataclass(frozen=True)
class OpenIncident:
    """An open incident someone was alerted about: its title, and who (None when several
    people who share the phone number were)."""

    title: str
    user_id: str | None


class LinkRefusedError(Exception):
    """An unknown, expired or already used link token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BridgeStore:
    """One PostgreSQL connection, opened on first use and reopened after a failure."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True, connect_timeout=5
            )
        return self._conn

    async def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with self._lock:
            # a connection broken since its last use (PostgreSQL restarted) fails its next
            # statement: reconnect and try once more before answering 503
            for tries_left in (1, 0):
                try:
                    conn = await self._connection()
                    cursor = await conn.execute(sql, params)
                    return await cursor.fetchall() if cursor.description else []
                except psycopg.OperationalError:
                    if self._conn is not None:
                        await self._conn.close()
                    self._conn = None
                    if not tries_left:
                        raise
            raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()

    async def ping(self) -> None:
        """Raise unless PostgreSQL answers (readiness)."""
        await self._run("SELECT 1", ())

    async def issue(
        self,
        incident_id: str,
        notification_id: str,
        user_id: str,
        ttl_s: int,
        actions: tuple[str, ...] = ACTIONS,
        channel: str = "EMAIL",
    ) -> dict[str, str]:
        """A fresh random token per action for one notification sent on `channel`:
        {action: token}."""
        tokens = {action: secrets.token_urlsafe(32) for action in actions}
        ttl = timedelta(seconds=ttl_s)
        params: list[Any] = []
        for action, token in tokens.items():
            params += [token_hash(token), action, incident_id, notification_id, user_id, ttl]
            params += [channel]
        await self._run(
            "INSERT INTO magic_link (token_sha256, action, incident_id, notification_id, "
            "user_id, expires_at, channel) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s, now() + %s, %s)"] * len(tokens)),
            tuple(params),
        )
        return tokens

    async def look(self, token: str) -> Link:
        """What `token` allows, without using it; LinkRefusedError if it cannot be used."""
        rows = await self._run(
            "SELECT action, incident_id, notification_id::text, user_id, expires_at, used_at, "
            "channel, expires_at <= now() FROM magic_link WHERE token_sha256 = %s",
            (token_hash(token),),
        )
        if not rows:
            raise LinkRefusedError("unknown link")
        *fields, expired = rows[0]
        link = Link(*fields)
        if link.used_at is not None:
            raise LinkRefusedError("this link was already used")
        if expired:
            raise LinkRefusedError("this link has expired")
        return link

    async def use(self, token: str) -> Link:
        """Mark `token` used, atomically: of two concurrent uses, one wins."""
        rows = await self._run(
            "UPDATE magic_link SET used_at = now() WHERE token_sha256 = %s AND used_at IS NULL "
            "AND expires_at > now() RETURNING action, incident_id, notification_id::text, "
            "user_id, expires_at, used_at, channel",
            (token_hash(token),),
        )
        if not rows:
            await self.look(token)  # raises with the precise reason
            raise LinkRefusedError("this link cannot be used")
        return Link(*rows[0])

    async def unuse(self, token: str) -> None:
        """Give a link back when its action could not be published."""
        await self._run(
            "UPDATE magic_link SET used_at = NULL WHERE token_sha256 = %s", (token_hash(token),)
        )

    async def open_incidents_of(self, phone: str) -> tuple[list[str], dict[str, OpenIncident]]:
        """Who has `phone` (user ids, from the read model's `person`) and the open incidents
        they were alerted about; "open" is neither acknowledged nor resolved, as the
        projection last folded the incidents topic."""
        people = [
            str(r[0])
            for r in await self._run(
                "SELECT user_id FROM person WHERE phone = %s ORDER BY user_id", (phone,)
            )
        ]
        if not people:
            return [], {}
        rows = await self._run(
            "SELECT i.incident_id, i.title, array_agg(DISTINCT n.user_id ORDER BY n.user_id) "
            "FROM incident i JOIN notification_log n ON n.incident_id = i.incident_id "
            "WHERE n.user_id = ANY(%s) AND coalesce(n.kind, 'ALERT') = 'ALERT' "
            "AND i.status = 'open' GROUP BY i.incident_id, i.title",
            (people,),
        )
        return people, {
            str(i): OpenIncident(str(t), str(users[0]) if len(users) == 1 else None)
            for i, t, users in rows
        }

    async def first_time(self, source: str, signature: str) -> bool:
        """Record a signed request; False when the same signature was accepted before."""
        rows = await self._run(
            "INSERT INTO seen_request (signature_sha256, source) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            (token_hash(signature), source),
        )
        return bool(rows)

    async def forget(self, signature: str) -> None:
        """Forget a request that was not published, so the provider's retry is accepted."""
        await self._run(
            "DELETE FROM seen_request WHERE signature_sha256 = %s", (token_hash(signature),)
        )

    async def prune(self, keep_s: int) -> None:
        """Drop remembered signatures and expired links older than `keep_s`."""
        await self._run(
            "DELETE FROM seen_request WHERE seen_at < now() - %s", (timedelta(seconds=keep_s),)
        )
        await self._run(
            "DELETE FROM magic_link WHERE expires_at < now() - %s", (timedelta(seconds=keep_s),)
        )
