"""Account creation and password checks against a real SQLite database."""

from __future__ import annotations

import pytest

from accounts import service
from accounts.service import AccountError
from core.database import Database


async def test_create_user_hashes_password(database: Database) -> None:
    async with database.session() as session:
        user = await service.create_user(
            session, email=" Claire@Example.org ", display_name="Claire", password="correct horse"
        )
    assert user.email == "claire@example.org"
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in user.password_hash


async def test_authenticate_accepts_right_password_only(database: Database) -> None:
    async with database.session() as session:
        await service.create_user(
            session, email="a@example.org", display_name="A", password="correct horse"
        )
        assert await service.authenticate(session, "A@example.org", "correct horse") is not None
        assert await service.authenticate(session, "a@example.org", "wrong horse!") is None
        assert await service.authenticate(session, "nobody@example.org", "correct horse") is None


@pytest.mark.parametrize(
    ("email", "name", "password", "code"),
    [
        ("not-an-email", "A", "correct horse", "email_invalid"),
        # Control, white space and invisible characters inside an address were accepted.
        ("a\x00b@example.org", "A", "correct horse", "email_invalid"),
        ("a\nb@example.org", "A", "correct horse", "email_invalid"),
        ("a\tb@example.org", "A", "correct horse", "email_invalid"),
        ("cla\u200bire@example.org", "A", "correct horse", "email_invalid"),
        ("claire@example.org\u00a0x", "A", "correct horse", "email_invalid"),
        ("a@example.org", "   ", "correct horse", "display_name_missing"),
        ("a@example.org", "A\u202eB", "correct horse", "display_name_invalid"),
        ("a@example.org", "x" * 81, "correct horse", "display_name_too_long"),
        ("a@example.org", "A", "short", "password_too_short"),
        ("a@example.org", "A", "x" * 201, "password_too_long"),
        # 255 characters, one above EMAIL_MAX_CHARS
        ("a" * 243 + "@example.org", "A", "correct horse", "email_invalid"),
    ],
)
async def test_create_user_rejects_bad_input(
    database: Database, email: str, name: str, password: str, code: str
) -> None:
    async with database.session() as session:
        with pytest.raises(AccountError) as raised:
            await service.create_user(session, email=email, display_name=name, password=password)
    assert raised.value.code == code


async def test_create_user_rejects_taken_email(database: Database) -> None:
    async with database.session() as session:
        await service.create_user(
            session, email="a@example.org", display_name="A", password="correct horse"
        )
    async with database.session() as session:
        with pytest.raises(AccountError) as raised:
            await service.create_user(
                session, email="A@EXAMPLE.org", display_name="B", password="other password"
            )
    assert raised.value.code == "email_taken"
