"""Firebase Cloud Messaging HTTP v1: messages:send with a bearer token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from adapters.base import HttpProvider, ProviderError, missing
from adapters.fcm_auth import ServiceAccountTokens
from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, FailureCategory, Priority, SendCommand
from notifier.domain.failures import Failure, FailureKind
from notifier.settings import Settings


def devices_of(command: SendCommand) -> list[str]:
    """Every device token of the person (the dispatcher lists them in address_params), the
    command's address first."""
    listed = [t for t in (command.address_params or {}).get("tokens", "").split(",") if t]
    return list(dict.fromkeys([command.address, *listed]))


log = logging.getLogger("notifier.fcm")


class FcmPush(HttpProvider):
    """A push notification to every registered device token of the person."""

    name = "fcm"
    channel = Channel.PUSH

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings
        self.unregistered: set[str] = set()  # device tokens FCM no longer knows
        self.tokens: ServiceAccountTokens | None = None
        if settings.fcm_service_account_file is not None:
            self.tokens = ServiceAccountTokens(settings.fcm_service_account_file)

    async def send(self, command: SendCommand) -> str:
        """Push to every registered device of the person at once; sent when one device
        took it. A token FCM reports UNREGISTERED is not used again by this worker."""
        devices = [d for d in devices_of(command) if d not in self.unregistered]
        if not devices:
            raise ProviderError(
                Failure(FailureKind.HTTP, 404, "UNREGISTERED"),
                "fcm: every device token of this person is unregistered",
            )
        bearer = await self.tokens.token() if self.tokens is not None else None
        outcomes: list[str | BaseException]
        if len(devices) == 1:  # most people: no task and gathering future per push
            outcomes = [await _outcome(self._push(command, bearer, devices[0]))]
        else:
            outcomes = await asyncio.gather(
                *(self._push(command, bearer, device) for device in devices),
                return_exceptions=True,
            )
        sent = [o for o in outcomes if isinstance(o, str)]
        failed = [o for o in outcomes if not isinstance(o, str)]
        for device, outcome in zip(devices, outcomes, strict=True):
            if isinstance(outcome, ProviderError) and outcome.failure.code == "UNREGISTERED":
                self.unregistered.add(device)
                log.warning(
                    "fcm: a device of the person is unregistered (%s***), not used again",
                    device[:4],
                    extra={"notification_id": command.notification_id},
                )
        if sent:
            return sent[0]
        errors = [e for e in failed if isinstance(e, ProviderError)]
        if len(errors) < len(failed):  # an adapter bug, not a provider's answer
            raise next(e for e in failed if not isinstance(e, ProviderError))
        # a failure a retry could still turn around speaks for the whole send
        raise min(errors, key=lambda e: e.category is not FailureCategory.TRANSIENT)

    async def _push(self, command: SendCommand, bearer: str | None, device: str) -> str:
        try:
            return await self.request(command, self.build(command, bearer, device))
        except ProviderError as exc:
            if exc.failure.status == 401 and self.tokens is not None:
                self.tokens.forget()  # revoked or rotated: the next send mints anew
            raise

    def build(
        self, command: SendCommand, token: str | None = None, device: str | None = None
    ) -> HttpCall:
        if not self.settings.fcm_project_id:
            raise missing("NOTIFIER_FCM_PROJECT_ID")
        if token is None:
            if self.settings.fcm_access_token is None:
                raise missing("NOTIFIER_FCM_SERVICE_ACCOUNT_FILE or NOTIFIER_FCM_ACCESS_TOKEN")
            token = self.settings.fcm_access_token.get_secret_value()
        urgent = command.priority in (Priority.CRITICAL, Priority.HIGH)
        message = {
            "token": device or command.address,
            "notification": {"title": command.title, "body": command.body},
            "data": {
                "incident_id": command.incident_id,
                "notification_id": command.notification_id,
                "url": command.url or "",
                "dashboard_url": command.dashboard_url or "",
            },
            # FCM v1's AndroidConfig.priority is an enum of NORMAL and HIGH: lower case is a 400
            "android": {"priority": "HIGH" if urgent else "NORMAL"},
            "apns": {"headers": {"apns-priority": "10" if urgent else "5"}},
        }
        base = self.settings.fcm_base_url.rstrip("/")
        return HttpCall(
            "POST",
            f"{base}/v1/projects/{self.settings.fcm_project_id}/messages:send",
            json={"message": message},
            headers={"Authorization": f"Bearer {token}"},
        )

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        if response.status_code == 200:
            return str(response.json()["name"])
        code, detail = None, response.text
        try:
            error = response.json()["error"]
            detail = str(error.get("message", ""))
            code = str(error.get("status", "")) or None
            for item in error.get("details", []):
                if "errorCode" in item:
                    code = str(item["errorCode"])
        except (ValueError, KeyError, TypeError):
            pass
        raise self.http_error(response, code, detail)


async def _outcome(push: Awaitable[str]) -> str | BaseException:
    """What one push gave, its error included, as `asyncio.gather` returns it."""
    try:
        return await push
    except Exception as exc:
        return exc
