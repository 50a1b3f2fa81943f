"""Email over SMTP (aiosmtplib): multipart text + HTML, optional STARTTLS and AUTH."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from adapters.base import ProviderError
from adapters.email_body import html_body
from notifier.contracts.records import Channel, SendCommand
from notifier.domain.failures import Failure, FailureKind
from notifier.settings import Settings


class SmtpEmail:
    """One message per send; the Message-ID we set is the provider message id."""

    name = "smtp"
    channel = Channel.EMAIL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def message(self, command: SendCommand) -> EmailMessage:
        """The MIME message: text/plain with an text/html alternative."""
        msg = EmailMessage()
        msg["From"] = self.settings.email_from
        msg["To"] = command.address
        msg["Subject"] = command.title
        msg["Message-ID"] = make_msgid(
            idstring=command.notification_id[:8],
            domain=self.settings.email_from.rpartition("@")[2] or None,
        )
        msg["X-Notifier-Notification-Id"] = command.notification_id
        msg["X-Notifier-Incident-Id"] = command.incident_id
        msg.set_content(command.body)
        msg.add_alternative(
            f"<html><body>{html_body(command.body, command.url, command.dashboard_url)}"
            "</body></html>",
            subtype="html",
        )
        return msg

    async def send(self, command: SendCommand) -> str:
        msg = self.message(command)
        password = self.settings.smtp_password
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                username=self.settings.smtp_username or None,
                password=password.get_secret_value() if password else None,
                start_tls=self.settings.smtp_starttls,
                use_tls=False,
                timeout=self.settings.send_timeout("EMAIL"),
            )
        except aiosmtplib.SMTPTimeoutError as exc:
            raise ProviderError(Failure(FailureKind.TIMEOUT), "smtp: timed out") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            code = exc.recipients[0].code if exc.recipients else 550
            raise ProviderError(
                Failure(FailureKind.SMTP, code), f"smtp: recipient refused ({code})"
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise ProviderError(
                Failure(FailureKind.SMTP, exc.code), f"smtp: {exc.code} {exc.message[:200]}"
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ProviderError(
                Failure(FailureKind.CONNECTION), f"smtp: {type(exc).__name__}: {exc}"
            ) from exc
        return str(msg["Message-ID"])

    async def close(self) -> None:
        """Nothing held open: one connection per message."""
