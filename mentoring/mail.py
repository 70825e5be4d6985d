"""Notification e-mails: the SMTP command-line options, and the outbox that sends each
stored notification once, from whichever process claims it first, through
core.mail.Mailer.

Without an SMTP host nothing is sent: each e-mail is logged as skipped, so that a
development machine never reaches an outside server.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update

from accounts.models import User
from core.database import Database, utc_now
from core.mail import Mailer, MailError
from core.settings import DEFAULT_SMTP_FROM, DEFAULT_SMTP_PORT, SmtpSettings
from mentoring.models import EmailState, Notification

logger = logging.getLogger(__name__)

# A notification's e-mail is tried this many times, one sweep interval apart, before
# it is marked failed: five minutes of retries ride out an SMTP server's restart.
EMAIL_ATTEMPTS_MAX = 5
# A `sending` claim older than this belonged to a process that died while sending.
# The next sweep takes it over, at the risk of sending that one e-mail twice.
STALE_CLAIM_SECS = 600.0


class EmailOutbox:
    """Sends the e-mail of each stored notification.

    A process claims a notification by moving it from `pending` to `sending` in one
    conditional UPDATE, so two processes never send the same e-mail, and the claim
    is the first write of its transaction, as SQLite needs (see chat.log.next_seq).
    """

    def __init__(
        self, database: Database, mailer: Mailer, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.database = database
        self.mailer = mailer
        self._clock = clock

    async def deliver(self, notification_ids: Iterable[int]) -> None:
        """Send the e-mails of these notifications now; errors are logged, and a failed
        e-mail stays pending for the next sweep."""
        for notification_id in notification_ids:
            await self._deliver_one(notification_id)

    async def deliver_due(self) -> int:
        """Send every pending e-mail and take over stale claims; return how many were tried."""
        stale_before = self._clock() - timedelta(seconds=STALE_CLAIM_SECS)
        async with self.database.session() as session:
            ids = list(
                await session.scalars(
                    select(Notification.id)
                    .where(
                        or_(
                            Notification.email_state == EmailState.PENDING,
                            (Notification.email_state == EmailState.SENDING)
                            & (Notification.email_claimed_at < stale_before),
                        )
                    )
                    .order_by(Notification.id)
                )
            )
        await self.deliver(ids)
        return len(ids)

    async def _deliver_one(self, notification_id: int) -> None:
        if not self.mailer.configured:
            await self._skip(notification_id)
            return

        claimed = await self._claim(notification_id)
        if claimed is None:
            return
        notification, address = claimed

        message = self.mailer.build(address, notification.subject, notification.body)
        try:
            await self.mailer.send(message)
        except MailError as error:
            attempts = notification.email_attempts
            final = attempts >= EMAIL_ATTEMPTS_MAX
            await self._finish(notification_id, EmailState.FAILED if final else EmailState.PENDING)
            logger.warning(
                "email %s notification=%s user=%s kind=%s attempt=%d: %s",
                "failed" if final else "not sent, will retry",
                notification_id,
                notification.user_id,
                notification.kind.value,
                attempts,
                error.reason,
            )
            return
        await self._finish(notification_id, EmailState.SENT)
        logger.info(
            "email sent notification=%s user=%s kind=%s",
            notification_id,
            notification.user_id,
            notification.kind.value,
        )

    async def _skip(self, notification_id: int) -> None:
        async with self.database.session() as session, session.begin():
            result = await session.execute(
                update(Notification)
                .where(
                    Notification.id == notification_id,
                    Notification.email_state == EmailState.PENDING,
                )
                .values(email_state=EmailState.SKIPPED)
            )
            skipped = cast(CursorResult[Any], result).rowcount == 1
        if skipped:
            logger.info("email skipped notification=%s: no SMTP host configured", notification_id)

    async def _claim(self, notification_id: int) -> tuple[Notification, str] | None:
        """Move the notification to `sending`; return it and its recipient's address, or
        None when another process claimed it or it needs no e-mail any more."""
        now = self._clock()
        stale_before = now - timedelta(seconds=STALE_CLAIM_SECS)
        async with self.database.session() as session, session.begin():
            result = await session.execute(
                update(Notification)
                .where(
                    Notification.id == notification_id,
                    or_(
                        Notification.email_state == EmailState.PENDING,
                        (Notification.email_state == EmailState.SENDING)
                        & (Notification.email_claimed_at < stale_before),
                    ),
                )
                .values(
                    email_state=EmailState.SENDING,
                    email_claimed_at=now,
                    email_attempts=Notification.email_attempts + 1,
                )
            )
            if cast(CursorResult[Any], result).rowcount != 1:
                return None
            row = (
                await session.execute(
                    select(Notification, User.email)
                    .join(User, User.id == Notification.user_id)
                    .where(Notification.id == notification_id)
                )
            ).one()
            notification, address = row
            return notification, address

    async def _finish(self, notification_id: int, state: EmailState) -> None:
        async with self.database.session() as session, session.begin():
            await session.execute(
                update(Notification)
                .where(Notification.id == notification_id)
                .values(email_state=state, email_claimed_at=None)
            )


# command-line options, shared by server.py and mentoring.batch


def add_smtp_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --smtp-host, --smtp-port, --smtp-from and --smtp-starttls to `parser`."""
    parser.add_argument(
        "--smtp-host",
        default=os.environ.get("SMTP_HOST") or None,
        help="SMTP server for notification e-mails (default: none, e-mails are logged as skipped)",
    )
    parser.add_argument(
        "--smtp-port",
        type=int,
        default=int(os.environ.get("SMTP_PORT") or DEFAULT_SMTP_PORT),
        help="SMTP port (default: %(default)s)",
    )
    parser.add_argument(
        "--smtp-from",
        default=os.environ.get("SMTP_FROM") or DEFAULT_SMTP_FROM,
        help="From address of notification e-mails (default: %(default)s)",
    )
    parser.add_argument(
        "--smtp-starttls",
        action="store_true",
        default=os.environ.get("SMTP_STARTTLS", "") in {"1", "true", "yes"},
        help="upgrade the SMTP connection with STARTTLS; SMTP_USERNAME and SMTP_PASSWORD "
        "from the environment log in when set",
    )


def smtp_settings_from(arguments: argparse.Namespace) -> SmtpSettings:
    return SmtpSettings(
        host=arguments.smtp_host,
        port=arguments.smtp_port,
        sender=arguments.smtp_from,
        starttls=arguments.smtp_starttls,
        username=os.environ.get("SMTP_USERNAME") or None,
        password=os.environ.get("SMTP_PASSWORD") or None,
    )
