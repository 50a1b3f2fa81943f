"""FCM's OAuth2 access tokens, minted from a Google service account and refreshed before
they expire (about an hour): a fixed token would stop push an hour after start."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.base import ProviderError
from notifier.domain.failures import Failure, FailureKind

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
REFRESH_BEFORE = timedelta(minutes=5)  # a token this close to its expiry is replaced first
REFRESH_TIMEOUT_S = 10.0  # google-auth's default is 120 s: a blackholed endpoint held threads


class ServiceAccountTokens:
    """Access tokens of one service account: minted on first use, then again whenever the
    one held expires within REFRESH_BEFORE or FCM refused it. google-auth signs the
    assertion and calls the account's token_uri; its client is blocking, so it runs in a
    thread, once for all the sends waiting on it."""

    def __init__(self, key_file: Path, now: Any = None) -> None:
        from google.oauth2 import service_account

        try:
            self.credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(key_file), scopes=[SCOPE]
            )
        except (OSError, ValueError) as exc:
            raise ProviderError(
                Failure(FailureKind.MISSING_SETTING),
                f"fcm: service account file {key_file} unusable: {exc}",
            ) from exc
        self._now = now or (lambda: datetime.now(UTC))
        self._refreshing: asyncio.Future[None] | None = None

    def _fresh(self) -> bool:
        token, expiry = self.credentials.token, self.credentials.expiry
        if not token or expiry is None:
            return False
        expires = expiry.replace(tzinfo=UTC)  # google-auth keeps naive UTC
        return bool(expires - self._now() > REFRESH_BEFORE)

    async def token(self) -> str:
        """A token valid for at least REFRESH_BEFORE more."""
        if not self._fresh():
            # one refresh for every send waiting, shielded: a send given up on (its
            # timeout) must not leave the thread running and start another
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.ensure_future(asyncio.to_thread(self._refresh))
            await asyncio.shield(self._refreshing)
        return str(self.credentials.token)

    def forget(self) -> None:
        """FCM refused the token (revoked, rotated key): mint a new one for the next send."""
        self.credentials.token = None

    def _refresh(self) -> None:
        from google.auth.exceptions import RefreshError, TransportError
        from google.auth.transport.requests import Request

        transport = Request()

        def request(*args: Any, **kwargs: Any) -> Any:
            # google-auth calls its transport as a function; the timeout is cut to ours
            kwargs["timeout"] = min(kwargs.get("timeout") or REFRESH_TIMEOUT_S, REFRESH_TIMEOUT_S)
            return transport(*args, **kwargs)

        try:
            self.credentials.refresh(request)
        except RefreshError as exc:
            if getattr(exc, "retryable", False):  # the token endpoint's 5xx or 429: transient
                raise ProviderError(
                    Failure(FailureKind.HTTP, 503),
                    f"fcm: token endpoint unavailable: {exc}",
                ) from exc
            raise ProviderError(  # the account or its key was refused: a configuration error
                Failure(FailureKind.HTTP, 401, "THIRD_PARTY_AUTH_ERROR"),
                f"fcm: no access token from the service account: {exc}",
            ) from exc
        except TransportError as exc:
            raise ProviderError(
                Failure(FailureKind.CONNECTION), f"fcm: token endpoint unreachable: {exc}"
            ) from exc
