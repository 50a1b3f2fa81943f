"""The HTTP client the provider adapters send through: aiohttp, one pooled session each.

httpx stays the project's HTTP client everywhere else; on the worker's hot path the same
request through httpx's API over aiohttp cost about 2.5x the CPU of aiohttp alone (see
docs/ARCHITECTURE.md, "HTTP"), so the adapters use the lower layer directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request to a provider."""

    method: str
    url: str
    json: Any = None
    data: dict[str, str] | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    auth: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A provider's answer, read whole: status, headers (case-insensitive) and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced: it only goes into error reasons)."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.content)


class HttpClient:
    """A pooled keep-alive client for one provider, with a total timeout per request.

    Raises TimeoutError when no answer came in time and aiohttp.ClientError when the
    connection failed, so the adapters can tell the two apart.
    """

    def __init__(
        self,
        timeout_s: float,
        max_connections: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_connections = max_connections
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # made on first use: a session belongs to the running event loop
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300),
                timeout=self.timeout,
                headers=self.headers,
                # providers' APIs take tokens, not cookies: no jar to match on each request
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def request(self, call: HttpCall) -> HttpResponse:
        """Make `call` and read the whole answer."""
        body: Any = call.data if call.data is not None else call.content
        headers = call.headers
        if call.json is not None:
            # encoded here rather than by aiohttp's JsonPayload (less work per request)
            body = json.dumps(call.json, separators=(",", ":")).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
        if call.auth:
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*call.auth)}
        async with self._open().request(
            call.method, call.url, data=body, headers=headers
        ) as response:
            return HttpResponse(response.status, response.headers, await response.read())

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
