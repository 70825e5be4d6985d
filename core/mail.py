"""Plain-text French e-mails through the configured SMTP server, for every package
that sends some: mentoring notifications and password reset links."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from core.settings import SmtpSettings

# One SMTP conversation (connect, STARTTLS, log-in, send) fails after this long.
SMTP_TIMEOUT_SECS = 30.0


class MailError(Exception):
    """Sending one e-mail failed; `reason` names the SMTP or network error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Mailer:
    """Sends plain-text French e-mails through the configured SMTP server."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp

    @property
    def configured(self) -> bool:
        return self.smtp.host is not None

    def build(self, to_address: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = to_address
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain="veillee.invalid")
        message.set_content(body)
        # after set_content, which drops the Content-* headers set before it
        message["Content-Language"] = "fr"
        return message

    async def send(self, message: EmailMessage) -> None:
        """Send `message`; raise MailError when the SMTP server cannot be reached or
        refuses it. smtplib blocks, so it runs in a worker thread."""
        try:
            await asyncio.to_thread(self._send_blocking, message)
        except (smtplib.SMTPException, OSError) as error:
            raise MailError(f"{type(error).__name__}: {error}") from error

    def _send_blocking(self, message: EmailMessage) -> None:
        host = self.smtp.host
        if host is None:
            raise RuntimeError("Mailer.send called without an SMTP host; check `configured`")
        with smtplib.SMTP(host, self.smtp.port, timeout=SMTP_TIMEOUT_SECS) as client:
            if self.smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.smtp.username:
                client.login(self.smtp.username, self.smtp.password or "")
            client.send_message(message)
