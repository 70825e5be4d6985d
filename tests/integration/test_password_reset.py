"""Forgotten passwords and password changes, from a real server process to a real SMTP
server (aiosmtpd on a loopback port): the French e-mail, the single-use link that
expires, the same response for every address, and the sessions that end."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import count

import httpx
import pytest
from sqlalchemy import select, update

from accounts.models import PasswordReset, User
from accounts.throttle import RESET_PER_ACCOUNT
from core.database import utc_now
from tests.support.chat_clients import database_in
from tests.support.clients import Account, csrf_from, log_in, sign_up
from tests.support.mail_server import MailServer, ReceivedMail
from tests.support.processes import ServerProcess, free_port

pytestmark = pytest.mark.slow

PASSWORD = "ancien mot de passe"
NEW_PASSWORD = "nouveau mot de passe"
SUBJECT = "Choisir un nouveau mot de passe pour Veillée"
PORT = free_port()
# An http:// origin, because an https:// one would make the session cookie Secure,
# which the plain-HTTP test clients cannot send back.
SITE_URL = f"http://127.0.0.1:{PORT}"
LINK_PATTERN = re.compile(re.escape(SITE_URL) + r"/password/reset/([A-Za-z0-9_-]+)")
SENT_PAGE = "Si un compte Veillée utilise l'adresse"
LINK_INVALID = "Ce lien ne permet plus de changer le mot de passe"

_numbers = count(1)


@dataclass
class Site:
    server: ServerProcess
    mail: MailServer

    def new_account(self, name: str) -> tuple[Account, httpx.Client]:
        """Sign up a person with a fresh address; return the account and its client."""
        account = Account(f"{name.lower()}{next(_numbers)}@example.org", PASSWORD, name)
        return account, sign_up(self.server.url, account)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    mail = MailServer()
    server = ServerProcess(
        tmp_path_factory.mktemp("password-reset"),
        extra_args=[
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(mail.port),
            "--smtp-from",
            "Veillée <compte@veillee.example.org>",
            "--site-url",
            SITE_URL,
        ],
        port=PORT,
    )
    try:
        yield Site(server, mail)
    finally:
        server.stop()
        mail.stop()


def ask_for_link(site: Site, email: str) -> httpx.Response:
    with httpx.Client(base_url=site.server.url) as visitor:
        page = visitor.get("/password/forgot")
        return visitor.post(
            "/password/forgot", data={"csrf_token": csrf_from(page.text), "email": email}
        )


def reset_mail(site: Site, email: str, after: int = 0) -> ReceivedMail:
    """Return the reset e-mail to `email` that arrives after the first `after` ones."""
    return site.mail.wait_for(
        lambda mail: (
            email in mail.recipients
            and mail.subject == SUBJECT
            and site.mail.to(email).index(mail) >= after
        ),
        f"reset e-mail to {email}",
    )


def token_of(mail: ReceivedMail) -> str:
    match = LINK_PATTERN.search(mail.body)
    assert match is not None, mail.body
    return match.group(1)


def choose_password(
    site: Site, token: str, password: str, confirmation: str | None = None
) -> httpx.Response:
    with httpx.Client(base_url=site.server.url) as visitor:
        page = visitor.get(f"/password/reset/{token}")
        csrf = (
            csrf_from(page.text)
            if page.status_code == 200
            else csrf_from(visitor.get("/login").text)
        )
        return visitor.post(
            f"/password/reset/{token}",
            data={
                "csrf_token": csrf,
                "password": password,
                "confirmation": password if confirmation is None else confirmation,
            },
        )


def can_log_in(site: Site, account: Account, password: str) -> bool:
    try:
        client = log_in(site.server.url, Account(account.email, password, account.display_name))
    except AssertionError:
        return False
    client.close()
    return True


def logged_in(client: httpx.Client) -> bool:
    return client.get("/profile").status_code == 200


def test_reset_link_sets_new_password(site: Site) -> None:
    account, session = site.new_account("Claire")
    response = ask_for_link(site, account.email)
    assert response.status_code == 200
    assert SENT_PAGE in response.text

    mail = reset_mail(site, account.email)
    assert mail.message["Content-Language"] == "fr"
    assert mail.body.startswith("Bonjour Claire,")
    assert "dans l'heure qui vient" in mail.body
    assert mail.body.rstrip().endswith("L'équipe de Veillée")
    token = token_of(mail)

    with httpx.Client(base_url=site.server.url) as visitor:
        page = visitor.get(f"/password/reset/{token}")
    assert page.status_code == 200
    assert "Choisir un nouveau mot de passe" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"

    response = choose_password(site, token, NEW_PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?mot-de-passe=change"
    assert can_log_in(site, account, NEW_PASSWORD)
    assert not can_log_in(site, account, PASSWORD)
    # the session opened before the reset ended
    assert not logged_in(session)
    session.close()


def test_reset_link_single_use(site: Site) -> None:
    account, session = site.new_account("Karim")
    session.close()
    ask_for_link(site, account.email)
    token = token_of(reset_mail(site, account.email))
    assert choose_password(site, token, NEW_PASSWORD).status_code == 303

    again = choose_password(site, token, "un troisième mot de passe")
    assert again.status_code == 404
    assert LINK_INVALID in again.text
    with httpx.Client(base_url=site.server.url) as visitor:
        assert visitor.get(f"/password/reset/{token}").status_code == 404
    assert can_log_in(site, account, NEW_PASSWORD)


async def expire_links(site: Site, email: str) -> None:
    database = database_in(site.server.data_dir)
    try:
        async with database.session() as session, session.begin():
            user_id = await session.scalar(select(User.id).where(User.email == email))
            await session.execute(
                update(PasswordReset)
                .where(PasswordReset.user_id == user_id)
                .values(expires_at=utc_now() - timedelta(seconds=1))
            )
    finally:
        await database.dispose()


def test_reset_link_expires(site: Site) -> None:
    account, session = site.new_account("Lucie")
    session.close()
    ask_for_link(site, account.email)
    token = token_of(reset_mail(site, account.email))
    asyncio.run(expire_links(site, account.email))

    response = choose_password(site, token, NEW_PASSWORD)
    assert response.status_code == 404
    assert LINK_INVALID in response.text
    assert can_log_in(site, account, PASSWORD)


def test_reset_newer_link_replaces_older(site: Site) -> None:
    account, session = site.new_account("Inès")
    session.close()
    ask_for_link(site, account.email)
    first = token_of(reset_mail(site, account.email))
    ask_for_link(site, account.email)
    second = token_of(reset_mail(site, account.email, after=1))
    assert first != second

    assert choose_password(site, first, NEW_PASSWORD).status_code == 404
    assert choose_password(site, second, NEW_PASSWORD).status_code == 303


def test_reset_unknown_address_same_page(site: Site) -> None:
    """A response that showed whether an account had the address would let anyone
    check whether a colleague uses Veillée."""
    account, session = site.new_account("Paul")
    session.close()
    unknown = "personne@example.org"
    for_nobody = ask_for_link(site, unknown)
    for_paul = ask_for_link(site, account.email)

    assert for_nobody.status_code == for_paul.status_code == 200
    # the pages differ by the address they repeat, and by nothing else
    assert for_nobody.text.replace(unknown, account.email) == for_paul.text
    reset_mail(site, account.email)
    assert site.mail.to(unknown) == []


def test_reset_wrong_confirmation_keeps_link(site: Site) -> None:
    account, session = site.new_account("Zoé")
    session.close()
    ask_for_link(site, account.email)
    token = token_of(reset_mail(site, account.email))

    differing = choose_password(site, token, NEW_PASSWORD, "autre chose encore")
    assert differing.status_code == 400
    assert "Les deux mots de passe saisis sont différents." in differing.text
    short = choose_password(site, token, "court")
    assert short.status_code == 400
    assert "au moins 10 caractères" in short.text
    assert choose_password(site, token, NEW_PASSWORD).status_code == 303


def test_reset_requests_rate_limited(site: Site) -> None:
    account, session = site.new_account("Marc")
    session.close()
    for _ in range(RESET_PER_ACCOUNT.max_events):
        assert ask_for_link(site, account.email).status_code == 200
    limited = ask_for_link(site, account.email.upper())
    assert limited.status_code == 429
    assert "Trop de demandes de nouveau mot de passe. Réessayez dans" in limited.text
    # the same for an address without account, so that the limit reveals nothing either
    for _ in range(RESET_PER_ACCOUNT.max_events):
        ask_for_link(site, "absent@example.org")
    assert ask_for_link(site, "absent@example.org").status_code == 429


async def stored_hashes(site: Site, email: str) -> list[str]:
    database = database_in(site.server.data_dir)
    try:
        async with database.session() as session:
            rows = await session.scalars(
                select(PasswordReset.token_hash)
                .join(User, User.id == PasswordReset.user_id)
                .where(User.email == email)
            )
            return list(rows)
    finally:
        await database.dispose()


def test_reset_token_hashed_and_not_logged(site: Site) -> None:
    account, session = site.new_account("Olivia")
    session.close()
    ask_for_link(site, account.email)
    token = token_of(reset_mail(site, account.email))
    with httpx.Client(base_url=site.server.url) as visitor:
        assert visitor.get(f"/password/reset/{token}").status_code == 200

    assert asyncio.run(stored_hashes(site, account.email)) == [
        hashlib.sha256(token.encode()).hexdigest()
    ]
    log = site.server.log_text()
    assert "/password/reset/***" in log
    assert token not in log


def test_change_password_ends_other_sessions(site: Site) -> None:
    account, here = site.new_account("Hélène")
    elsewhere = log_in(site.server.url, account)
    page = here.get("/profile")
    form = {"csrf_token": csrf_from(page.text), "confirmation": NEW_PASSWORD}

    wrong = here.post(
        "/profile/password",
        data={**form, "current_password": "pas le bon", "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 400
    assert "Le mot de passe actuel est incorrect." in wrong.text

    changed = here.post(
        "/profile/password",
        data={**form, "current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 200
    assert "Votre mot de passe est changé." in changed.text
    assert logged_in(here)
    assert not logged_in(elsewhere)
    assert can_log_in(site, account, NEW_PASSWORD)
    here.close()
    elsewhere.close()
