"""Twilio Programmable Messaging and Voice: form-encoded REST calls with basic auth."""

from __future__ import annotations

from urllib.parse import urlencode
from xml.sax.saxutils import escape

from adapters.base import HttpProvider, missing
from adapters.http import HttpCall, HttpClient, HttpResponse
from notifier.contracts.records import Channel, NotificationKind, SendCommand
from notifier.domain.sms_reply import sms_reply_hint
from notifier.settings import Settings


class _Twilio(HttpProvider):
    name = "twilio"
    receipts = True  # status callbacks/events report delivery to the bridge
    resource = ""

    def __init__(self, client: HttpClient, settings: Settings) -> None:
        super().__init__(client)
        self.settings = settings

    def _auth(self) -> tuple[str, str]:
        if not self.settings.twilio_account_sid:
            raise missing("NOTIFIER_TWILIO_ACCOUNT_SID")
        if self.settings.twilio_auth_token is None:
            raise missing("NOTIFIER_TWILIO_AUTH_TOKEN")
        if not self.settings.twilio_from:
            raise missing("NOTIFIER_TWILIO_FROM")
        return self.settings.twilio_account_sid, self.settings.twilio_auth_token.get_secret_value()

    def _url(self) -> str:
        base = self.settings.twilio_base_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.settings.twilio_account_sid}/{self.resource}.json"

    def _status_callback(self, command: SendCommand) -> str | None:
        # our ids travel in the callback URL: Twilio posts status changes back to it
        if not self.settings.callback_base_url:
            return None
        query = urlencode(
            {
                "n": command.notification_id,
                "i": command.incident_id,
                "c": command.channel.value,
                "u": command.user_id,
            }
        )
        return f"{self.settings.callback_base_url.rstrip('/')}/twilio/status?{query}"

    def message_id(self, command: SendCommand, response: HttpResponse) -> str:
        if response.status_code in (200, 201):
            return str(response.json()["sid"])
        try:
            body = response.json()
            code, detail = str(body.get("code", "")) or None, str(body.get("message", ""))
        except ValueError:
            code, detail = None, response.text
        raise self.http_error(response, code, detail)


class TwilioSms(_Twilio):
    """SMS through the Messages resource."""

    channel = Channel.SMS
    resource = "Messages"

    def text(self, command: SendCommand) -> str:
        """The SMS text: alerts invite a reply that acknowledges when the bridge gets replies
        (the template kept room for the hint, so the SMS stays one segment)."""
        if (
            command.kind is NotificationKind.ALERT
            and self.settings.callback_base_url
            and self.settings.sms_replies
        ):
            several = bool(set(command.bundled.values()) - {command.incident_id})
            return command.body + sms_reply_hint(command.incident_id, several)
        return command.body

    def build(self, command: SendCommand) -> HttpCall:
        auth = self._auth()
        form = {
            "To": command.address,
            "From": self.settings.twilio_from,
            "Body": self.text(command),
        }
        callback = self._status_callback(command)
        if callback:
            form["StatusCallback"] = callback
        return HttpCall("POST", self._url(), data=form, auth=auth)


class TwilioVoice(_Twilio):
    """A phone call through the Calls resource, with TwiML that reads the incident out."""

    channel = Channel.VOICE
    resource = "Calls"

    def twiml(self, command: SendCommand) -> str:
        """Say the message twice; pressing 1 acknowledges (the bridge handles the gather)."""
        said = escape(command.body)
        action = ""
        if self.settings.callback_base_url:
            query = urlencode(
                {"n": command.notification_id, "i": command.incident_id, "u": command.user_id}
            )
            action = (
                f' action="{escape(self.settings.callback_base_url.rstrip("/"))}'
                f'/twilio/gather?{escape(query)}"'
            )
        return (
            f'<Response><Gather numDigits="1" timeout="10"{action}>'
            f"<Say>{said}</Say><Say>Press 1 to acknowledge.</Say></Gather>"
            f"<Say>{said}</Say></Response>"
        )

    def build(self, command: SendCommand) -> HttpCall:
        auth = self._auth()
        form = {
            "To": command.address,
            "From": self.settings.twilio_from,
            "Twiml": self.twiml(command),
        }
        callback = self._status_callback(command)
        if callback:
            form["StatusCallback"] = callback
            form["StatusCallbackEvent"] = "completed"
        return HttpCall("POST", self._url(), data=form, auth=auth)
