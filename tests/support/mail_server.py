"""A real SMTP server for tests: aiosmtpd on a free loopback port, keeping every
message it receives, with waits that end as soon as the expected message arrives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.processes import free_port

# An e-mail goes out right after the change that causes it, or at the next sweep;
# a loaded CI machine may need a few seconds for either.
MAIL_TIMEOUT_SECS = 15.0


@dataclass(frozen=True)
class ReceivedMail:
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        if part is None:
            raise AssertionError(f"e-mail {self.subject!r} has no text/plain part")
        content: str = part.get_content()
        return content


class _Handler:
    def __init__(self, mailbox: MailServer) -> None:
        self.mailbox = mailbox

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if not isinstance(message, EmailMessage):
            raise TypeError(f"parsed {type(message).__name__}, expected EmailMessage")
        self.mailbox.add(ReceivedMail(tuple(envelope.rcpt_tos), message))
        return "250 OK"


class MailServer:
    """aiosmtpd in its own thread, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self._changed = threading.Condition()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def add(self, mail: ReceivedMail) -> None:
        with self._changed:
            self.messages.append(mail)
            self._changed.notify_all()

    def stop(self) -> None:
        self._controller.stop()

    def clear(self) -> None:
        """Forget the messages received so far, between two tests sharing the server."""
        with self._changed:
            self.messages.clear()

    def to(self, address: str) -> list[ReceivedMail]:
        with self._changed:
            return [mail for mail in self.messages if address in mail.recipients]

    def wait_for(
        self,
        predicate: Callable[[ReceivedMail], bool],
        what: str,
        timeout: float = MAIL_TIMEOUT_SECS,
    ) -> ReceivedMail:
        """Return the first message matching `predicate`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for mail in self.messages:
                    if predicate(mail):
                        return mail
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [(mail.recipients, mail.subject) for mail in self.messages]
                    raise TimeoutError(f"no e-mail {what} after {timeout} s; received {subjects}")
                self._changed.wait(remaining)

    async def wait_for_async(
        self,
        predicate: Callable[[ReceivedMail], bool],
        what: str,
        timeout: float = MAIL_TIMEOUT_SECS,
    ) -> ReceivedMail:
        """`wait_for` from a coroutine, without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, what, timeout)

    def wait_for_mail(
        self, address: str, subject: str, timeout: float = MAIL_TIMEOUT_SECS
    ) -> ReceivedMail:
        return self.wait_for(
            lambda mail: address in mail.recipients and mail.subject == subject,
            f"to {address} with subject {subject!r}",
            timeout,
        )
