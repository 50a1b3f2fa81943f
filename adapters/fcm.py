"""Firebase Cloud Messaging HTTP v1: messages:send with a bearer token."""

from __future__ import annotations

from adapters.base import HttpProvider, ProviderError, missing
from adapters.fcm_auth import ServiceAccountTokens
from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, Priority, SendCommand
from notifier.settings import Settings


class FcmPush(HttpProvider):
    """A push notification to the user's first registered device token."""

    name = "fcm"
    channel = Channel.PUSH

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings
        self.tokens: ServiceAccountTokens | None = None
        if settings.fcm_service_account_file is not None:
            self.tokens = ServiceAccountTokens(settings.fcm_service_account_file)

    async def send(self, command: SendCommand) -> str:
        if self.tokens is None:
            return await super().send(command)
        call = self.build(command, await self.tokens.token())
        try:
            return await self.request(command, call)
        except ProviderError as exc:
            if exc.failure.status == 401:  # revoked or rotated: the next send mints anew
                self.tokens.forget()
            raise

    def build(self, command: SendCommand, token: str | None = None) -> HttpCall:
        if not self.settings.fcm_project_id:
            raise missing("NOTIFIER_FCM_PROJECT_ID")
        if token is None:
            if self.settings.fcm_access_token is None:
                raise missing("NOTIFIER_FCM_SERVICE_ACCOUNT_FILE or NOTIFIER_FCM_ACCESS_TOKEN")
            token = self.settings.fcm_access_token.get_secret_value()
        urgent = command.priority in (Priority.CRITICAL, Priority.HIGH)
        message = {
            "token": command.address,
            "notification": {"title": command.title, "body": command.body},
            "data": {
                "incident_id": command.incident_id,
                "notification_id": command.notification_id,
                "url": command.url or "",
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
