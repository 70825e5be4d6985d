"""Account creation and password authentication (argon2id)."""

from __future__ import annotations

import contextlib
import logging
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import Role, User
from core.timezones import TIME_ZONES

logger = logging.getLogger(__name__)

PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_CHARS = 200
DISPLAY_NAME_MAX_CHARS = 80
EMAIL_MAX_CHARS = 254

_hasher = PasswordHasher()
# Verifying against this hash when the e-mail is unknown keeps the response time
# of a failed log-in the same whether or not the account exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class AccountError(Exception):
    """A rejected account operation; `message` is French and shown to the person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


def normalize_email(raw: str) -> str:
    return raw.strip().lower()


def clean_display_name(raw: str) -> str:
    """Normalize a display name; raise AccountError if empty, too long or with control chars."""
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise AccountError("display_name_missing", "Indiquez le nom affiché aux collègues.")
    if len(name) > DISPLAY_NAME_MAX_CHARS:
        raise AccountError(
            "display_name_too_long",
            f"Le nom affiché dépasse {DISPLAY_NAME_MAX_CHARS} caractères.",
        )
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn"} for char in name):
        raise AccountError(
            "display_name_invalid", "Le nom affiché contient des caractères non autorisés."
        )
    return name


def validate_email(email: str) -> None:
    local, _, domain = email.partition("@")
    # A line break cannot go into a mail header, and white space or an invisible format
    # character (U+200B zero-width space) makes two addresses that read the same.
    hidden = any(char.isspace() or unicodedata.category(char).startswith("C") for char in email)
    if not local or "." not in domain or len(email) > EMAIL_MAX_CHARS or hidden:
        raise AccountError("email_invalid", "Cette adresse électronique n'est pas valide.")


def hash_password(password: str) -> str:
    """Return the argon2id hash of `password`, to store in `User.password_hash`."""
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    """Return whether `password` is the account's password."""
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def validate_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_CHARS:
        raise AccountError(
            "password_too_short",
            f"Le mot de passe doit compter au moins {PASSWORD_MIN_CHARS} caractères.",
        )
    if len(password) > PASSWORD_MAX_CHARS:
        raise AccountError(
            "password_too_long",
            f"Le mot de passe ne doit pas dépasser {PASSWORD_MAX_CHARS} caractères.",
        )


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    display_name: str,
    password: str,
    time_zone: str = "Europe/Paris",
    role: Role = Role.TEACHER,
) -> User:
    """Create and commit an account; raise AccountError on invalid input or a taken e-mail."""
    email = normalize_email(email)
    validate_email(email)
    name = clean_display_name(display_name)
    validate_password(password)
    if time_zone not in TIME_ZONES:
        raise AccountError("time_zone_invalid", "Ce fuseau horaire n'est pas proposé.")

    user = User(
        email=email,
        display_name=name,
        password_hash=_hasher.hash(password),
        time_zone=time_zone,
        role=role,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise AccountError(
            "email_taken", "Un compte existe déjà avec cette adresse électronique."
        ) from error
    logger.info("account created user=%s", user.id)
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """Return the user whose e-mail and password match, or None."""
    user = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        await session.commit()
    return user


async def update_time_zone(session: AsyncSession, user: User, time_zone: str) -> None:
    if time_zone not in TIME_ZONES:
        raise AccountError("time_zone_invalid", "Ce fuseau horaire n'est pas proposé.")
    user.time_zone = time_zone
    await session.commit()


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def change_password(session: AsyncSession, user: User, current: str, new: str) -> None:
    """Replace the password of `user`, loaded in `session`, and end all its sessions;
    raise AccountError when `current` is wrong or `new` too short or too long."""
    if not verify_password(user, current):
        raise AccountError("password_wrong", "Le mot de passe actuel est incorrect.")
    validate_password(new)
    user.password_hash = hash_password(new)
    user.session_version += 1
    await session.commit()
    logger.info("password changed user=%s", user.id)


async def end_sessions(session: AsyncSession, user_id: int) -> None:
    """Raise the account's session version and commit, which ends every session of the
    account started before, in every browser (core.web.current_user)."""
    await session.execute(
        update(User).where(User.id == user_id).values(session_version=User.session_version + 1)
    )
    await session.commit()
    logger.info("sessions ended user=%s", user_id)
