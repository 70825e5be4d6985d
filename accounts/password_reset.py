"""Forgotten passwords: a single-use link sent by e-mail, which expires.

The person gives an e-mail address. When an account has it, the server stores the
SHA-256 of a random token and e-mails a link that carries the token. Opening the link
within RESET_LINK_LIFETIME_SECS lets them choose a new password once. That also ends
every session of the account. Whether an account has the address is never shown: the
response page is the same, and the work happens after the response, in the
background.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import PasswordReset, User
from accounts.service import AccountError, hash_password, normalize_email, validate_password
from core.database import Database, utc_now
from core.mail import Mailer, MailError

logger = logging.getLogger(__name__)

# Long enough to find the e-mail and open it, short enough that a link found later in
# a mailbox no longer opens the account.
RESET_LINK_LIFETIME_SECS = 3600
RESET_PATH_PREFIX = "/password/reset/"
RESET_SUBJECT = "Choisir un nouveau mot de passe pour Veillée"
LINK_INVALID_MESSAGE = (
    "Ce lien ne permet plus de changer le mot de passe : il a expiré ou a déjà servi. "
    "Demandez un nouveau lien."
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def reset_email(name: str, link: str) -> str:
    """Return the French body of the e-mail that carries the reset link."""
    return (
        f"Bonjour {name},\n\n"
        "Quelqu'un, sans doute vous, a demandé à changer le mot de passe de votre compte "
        "Veillée. Pour choisir un nouveau mot de passe, ouvrez ce lien dans l'heure qui "
        f"vient :\n\n{link}\n\n"
        "Le lien ne sert qu'une fois. Une fois le mot de passe changé, toutes vos "
        "sessions ouvertes sont fermées.\n\n"
        "Si vous n'avez rien demandé, ignorez ce message : votre mot de passe reste le "
        "même.\n\n"
        "L'équipe de Veillée\n"
    )


async def issue_link(session: AsyncSession, email: str, now: datetime) -> tuple[User, str] | None:
    """Store a new reset token for the account of `email`; return the account and the
    token, or None when no account has that address.

    The account's earlier links stop working, so that only the latest e-mail counts.
    """
    user = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        return None
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordReset(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + timedelta(seconds=RESET_LINK_LIFETIME_SECS),
        )
    )
    await session.commit()
    return user, token


async def link_is_valid(session: AsyncSession, token: str, now: datetime) -> bool:
    """Return whether `token` is a link that was not used and has not expired."""
    reset_id = await session.scalar(
        select(PasswordReset.id).where(
            PasswordReset.token_hash == hash_token(token),
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > now,
        )
    )
    return reset_id is not None


async def reset_password(database: Database, token: str, password: str, now: datetime) -> User:
    """Set the password of the link's account and end all its sessions; raise
    AccountError for a weak password or a link that is unknown, used or expired.

    Marking the link used is a conditional UPDATE, so that two requests racing with one
    link cannot both change the password.
    """
    validate_password(password)
    async with database.session() as session, session.begin():
        result = await session.execute(
            update(PasswordReset)
            .where(
                PasswordReset.token_hash == hash_token(token),
                PasswordReset.used_at.is_(None),
                PasswordReset.expires_at > now,
            )
            .values(used_at=now)
            .returning(PasswordReset.user_id)
        )
        user_id = result.scalar_one_or_none()
        if user_id is None:
            raise AccountError("reset_link_invalid", LINK_INVALID_MESSAGE)
        user = await session.get(User, user_id)
        if user is None:
            raise RuntimeError(f"password reset of user {user_id}, who has no account")
        user.password_hash = hash_password(password)
        user.session_version += 1
        # the account's other links, from earlier e-mails, stop working too
        others = await session.execute(
            update(PasswordReset)
            .where(PasswordReset.user_id == user_id, PasswordReset.used_at.is_(None))
            .values(used_at=now)
        )
        logger.info(
            "password reset user=%s, %d older links closed",
            user_id,
            cast(CursorResult[Any], others).rowcount,
        )
    return user


class ResetLinkSender:
    """Issues reset links and e-mails them in background tasks, after the response.

    The response to a request is then the same, in content and in time, whether or not
    an account has the address.
    """

    def __init__(self, database: Database, mailer: Mailer) -> None:
        self.database = database
        self.mailer = mailer
        self._tasks: set[asyncio.Task[None]] = set()

    def request_link(self, email: str, site_url: str) -> None:
        """Send a reset link to `email` when an account has it, in the background."""
        task = asyncio.create_task(self._issue_and_send(email, site_url), name="password-reset")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_for_deliveries(self) -> None:
        """Wait for the e-mails being sent, such as before the server stops."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _issue_and_send(self, email: str, site_url: str) -> None:
        try:
            async with self.database.session() as session:
                issued = await issue_link(session, email, utc_now())
        except Exception:
            logger.exception("password reset: storing a link failed")
            return
        if issued is None:
            logger.info("password reset requested for an address without account")
            return

        user, token = issued
        if not self.mailer.configured:
            logger.warning("password reset e-mail skipped user=%s: no SMTP host", user.id)
            return
        link = site_url.rstrip("/") + RESET_PATH_PREFIX + token
        message = self.mailer.build(user.email, RESET_SUBJECT, reset_email(user.display_name, link))
        try:
            await self.mailer.send(message)
        except MailError as error:
            logger.warning("password reset e-mail failed user=%s: %s", user.id, error.reason)
            return
        logger.info("password reset e-mail sent user=%s", user.id)
