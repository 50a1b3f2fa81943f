"""What every provider adapter is: one `send(command)` returning the provider's message id
or raising ProviderError with what went wrong. Providers differ in data, not control flow."""

from __future__ import annotations

import email.utils
import time
from typing import Protocol

import aiohttp

from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, FailureCategory, SendCommand
from notifier.domain.failures import Failure, FailureKind, classify


class ProviderError(Exception):
    """A send that failed: what was observed, its category, and a reason without contacts."""

    def __init__(self, failure: Failure, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason
        self.retry_after_s = retry_after_s

    @property
    def category(self) -> FailureCategory:
        """TRANSIENT, PERMANENT or CONFIGURATION, from the classification table."""
        return classify(self.failure)


def missing(setting: str) -> ProviderError:
    """The error for a provider setting nobody configured."""
    return ProviderError(Failure(FailureKind.MISSING_SETTING), f"setting {setting} is not set")


class Provider(Protocol):
    """One provider of one channel."""

    name: str
    channel: Channel

    async def send(self, command: SendCommand) -> str:
        """Deliver `command`; the provider's message id, or ProviderError."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def retry_after(response: HttpResponse) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class HttpProvider:
    """Base of the HTTP providers: builds a call, makes it, maps transport errors."""

    name = "http"
    channel = Channel.WEBHOOK

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def build(self, command: SendCommand) -> HttpCall:
        """The request that delivers `command`."""
        raise NotImplementedError

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        """The provider's id from a successful response; ProviderError if it is a failure."""
        raise NotImplementedError

    async def send(self, command: SendCommand) -> str:
        return await self.request(command, self.build(command))

    async def request(self, command: SendCommand, call: HttpCall) -> str:
        """Make `call` for `command`; the provider's message id, or ProviderError."""
        try:
            response = await self.client.request(call)
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise ProviderError(
                Failure(FailureKind.TIMEOUT),
                f"{self.name}: no answer in time ({type(exc).__name__})",
            ) from exc
        except aiohttp.ClientError as exc:
            raise ProviderError(
                Failure(FailureKind.CONNECTION), f"{self.name}: {type(exc).__name__}: {exc}"
            ) from exc
        return self.message_id(command, response)

    def http_error(self, response: HttpResponse, code: str | None, detail: str) -> ProviderError:
        """The error for a non-success response."""
        return ProviderError(
            Failure(FailureKind.HTTP, response.status_code, code),
            f"{self.name}: HTTP {response.status_code}"
            f"{f' code {code}' if code else ''}: {detail[:300]}",
            retry_after(response),
        )

    async def close(self) -> None:
        await self.client.aclose()
