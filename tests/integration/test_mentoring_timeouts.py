"""The background task of a real server process passes an unanswered request to the next
mentor once the configured time is up, then leaves it waiting for the next batch. The
answer time is one second, and the test waits on the e-mails, not on a clock."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import select

from mentoring.models import AttemptOutcome, MentoringRequest, RequestAttempt, RequestStatus
from tests.support import mentoring_flows as flows
from tests.support.chat_clients import database_in
from tests.support.clients import Account, sign_up
from tests.support.mail_server import MailServer
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.slow]

PASSWORD = "correct horse"


@dataclass
class Site:
    server: ServerProcess
    mail: MailServer
    clients: dict[str, httpx.Client] = field(default_factory=dict)


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    mail = MailServer()
    server = ServerProcess(
        tmp_path_factory.mktemp("mentoring-timeouts"),
        extra_args=[
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(mail.port),
            "--mentoring-answer-timeout",
            "1",
            "--mentoring-sweep-interval",
            "0.2",
        ],
    )
    result = Site(server, mail)
    try:
        for name in ("Claire", "Karim", "Lea"):
            result.clients[name] = sign_up(
                server.url, Account(f"{name.lower()}@example.org", PASSWORD, name)
            )
        yield result
    finally:
        for client in result.clients.values():
            client.close()
        server.stop()
        mail.stop()


async def test_background_task_passes_unanswered_on(site: Site) -> None:
    assert flows.save_offer(site.clients["Claire"]).status_code == 303
    assert flows.save_offer(site.clients["Karim"], academy="grenoble").status_code == 303
    lea = site.clients["Lea"]
    mentor_ids = flows.proposed_mentor_ids(lea, flows.need_form())
    request_id = flows.request_id_of(flows.send_request(lea, flows.need_form(), mentor_ids[0]))

    passed = site.mail.wait_for_mail(
        "lea@example.org", "Votre demande de mentorat est transmise à un autre mentor"
    )
    assert "Claire n'a pas répondu à votre demande dans le délai prévu de 1 seconde" in passed.body
    assert "transmise à Karim" in passed.body
    waiting = site.mail.wait_for_mail(
        "lea@example.org", "Votre demande de mentorat attend la prochaine répartition"
    )
    assert "Karim n'a pas répondu à votre demande" in waiting.body

    database = database_in(site.server.data_dir)
    try:
        async with database.session() as session:
            request = await session.get(MentoringRequest, request_id)
            outcomes = list(
                await session.execute(
                    select(RequestAttempt.mentor_id, RequestAttempt.outcome)
                    .where(RequestAttempt.request_id == request_id)
                    .order_by(RequestAttempt.id)
                )
            )
    finally:
        await database.dispose()
    assert request is not None
    assert request.status is RequestStatus.WAITING
    assert [(mentor_id, outcome) for mentor_id, outcome in outcomes] == [
        (mentor_ids[0], AttemptOutcome.TIMED_OUT),
        (mentor_ids[1], AttemptOutcome.TIMED_OUT),
    ]
    inbox = site.clients["Claire"].get("/mentoring/inbox")
    assert "sans réponse dans le délai" in inbox.text
    too_late = flows.answer(site.clients["Claire"], request_id, accept=True)
    assert too_late.status_code == 409
    assert "n'attend plus votre réponse" in html.unescape(too_late.text)
    assert "mentoring sweeper started" in site.server.log_text()
