"""The mentoring pages of a real server: every screen in French, and bad input through
the forms answered with a clear French error while what was stored stays as it was."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from mentoring.models import (
    AttemptOutcome,
    MentoringRequest,
    MentorOffer,
    Mentorship,
    RequestAttempt,
)
from tests.support import mentoring_flows as flows
from tests.support.chat_clients import database_in
from tests.support.clients import Account, sign_up
from tests.support.processes import ServerProcess

PASSWORD = "correct horse"


@dataclass
class Site:
    server: ServerProcess
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def join(self, name: str) -> httpx.Client:
        client = sign_up(self.server.url, Account(f"{name.lower()}@example.org", PASSWORD, name))
        self.clients[name] = client
        return client


def text_of(response: httpx.Response) -> str:
    return html.unescape(response.text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = ServerProcess(tmp_path_factory.mktemp("mentoring-pages"))
    result = Site(server)
    try:
        for name in ("Claire", "Karim", "Ines"):
            result.join(name)
        assert flows.save_offer(result.clients["Claire"], capacity="3").status_code == 303
        assert flows.save_offer(result.clients["Karim"], academy="grenoble").status_code == 303
        ranking = flows.proposed_mentor_ids(result.clients["Ines"], flows.need_form())
        result.ids = {"Claire": ranking[0], "Karim": ranking[1]}
        yield result
    finally:
        for client in result.clients.values():
            client.close()
        server.stop()


@dataclass
class Snapshot:
    offers: list[tuple[int, int, list[str], str]]
    requests: list[tuple[int, int, str]]
    attempts: list[tuple[int, int, str]]
    mentorships: int


async def snapshot(data_dir: Path) -> Snapshot:
    """Everything mentoring stored, to compare before and after a rejected action."""
    database = database_in(data_dir)
    try:
        async with database.session() as session:
            offers = [
                (offer.user_id, offer.capacity, list(offer.disciplines), offer.status.value)
                for offer in await session.scalars(select(MentorOffer).order_by(MentorOffer.id))
            ]
            requests = [
                (request.id, request.mentee_id, request.status.value)
                for request in await session.scalars(
                    select(MentoringRequest).order_by(MentoringRequest.id)
                )
            ]
            attempts = [
                (attempt.request_id, attempt.mentor_id, attempt.outcome.value)
                for attempt in await session.scalars(
                    select(RequestAttempt).order_by(RequestAttempt.id)
                )
            ]
            mentorships = await session.scalar(select(func.count()).select_from(Mentorship))
    finally:
        await database.dispose()
    return Snapshot(offers, requests, attempts, mentorships or 0)


@pytest.fixture
async def before(site: Site) -> AsyncIterator[Snapshot]:
    yield await snapshot(site.server.data_dir)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"capacity": "0"}, "doit être d'au moins 1"),
        ({"capacity": "-2"}, "doit être d'au moins 1"),
        ({"capacity": "beaucoup"}, "Indiquez en chiffres"),
        ({"disciplines": ["astrologie"]}, "La discipline « astrologie » n'existe pas"),
        ({"academy": "atlantide"}, "L'académie « atlantide » n'existe pas"),
        ({"levels": []}, "Choisissez au moins un niveau."),
    ],
)
async def test_offer_form_rejects_bad_input(
    site: Site, before: Snapshot, values: dict[str, object], expected: str
) -> None:
    response = flows.save_offer(site.clients["Claire"], **values)  # type: ignore[arg-type]

    assert response.status_code == 400
    assert expected in text_of(response)
    assert '<p class="error" role="alert">' in response.text
    assert await snapshot(site.server.data_dir) == before
    form = site.clients["Claire"].get("/mentoring/offer")
    assert 'name="capacity" required min="1" max="10" value="3"' in form.text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"academy": "atlantide"}, "L'académie « atlantide » n'existe pas"),
        ({"discipline": "astrologie"}, "La discipline « astrologie » n'existe pas"),
        ({"need": "   "}, "Décrivez votre besoin"),
    ],
)
async def test_request_form_rejects_bad_input(
    site: Site, before: Snapshot, values: dict[str, str], expected: str
) -> None:
    need = {**flows.need_form(), **values}

    for mentor_id in (None, site.ids["Claire"]):
        response = flows.send_request(site.clients["Ines"], need, mentor_id)
        assert response.status_code == 400
        assert expected in text_of(response)
    preview = site.clients["Ines"].post(
        "/mentoring/request", data={"csrf_token": flows.csrf(site.clients["Ines"]), **need}
    )
    assert preview.status_code == 400
    assert await snapshot(site.server.data_dir) == before


async def test_request_to_oneself_rejected(site: Site, before: Snapshot) -> None:
    response = flows.send_request(site.clients["Claire"], flows.need_form(), site.ids["Claire"])

    assert response.status_code == 400
    assert "Vous ne pouvez pas vous adresser votre propre demande" in text_of(response)
    assert await snapshot(site.server.data_dir) == before
    ranking = flows.proposed_mentor_ids(site.clients["Claire"], flows.need_form())
    assert site.ids["Claire"] not in ranking


async def test_second_request_and_foreign_accept_rejected(site: Site) -> None:
    """A second request while one is pending, and an accept by a mentor who was not
    asked, are both answered in French and change nothing."""
    lea = site.join("Lea")
    sent = flows.send_request(lea, flows.need_form(), site.ids["Claire"])
    request_id = flows.request_id_of(sent)
    stored = await snapshot(site.server.data_dir)

    second = flows.send_request(lea, flows.need_form(need="Autre chose"), site.ids["Karim"])
    assert second.status_code == 409
    assert "Vous avez déjà une demande de mentorat en cours" in text_of(second)

    for intruder in ("Karim", "Ines"):
        accepted = flows.answer(site.clients[intruder], request_id, accept=True)
        # the same answer as for a request that does not exist
        assert accepted.status_code == 404
        assert "Cette demande de mentorat n'existe pas." in text_of(accepted)
        declined = flows.answer(site.clients[intruder], request_id, accept=False)
        assert declined.status_code == 404
    for missing_id in (999_999, 2**31, 10**12):
        missing = flows.answer(site.clients["Karim"], missing_id, accept=True)
        assert missing.status_code == 404
    huge_mentor = flows.send_request(site.clients["Ines"], flows.need_form(), 10**30)
    assert huge_mentor.status_code == 400
    assert "Choisissez un mentor dans la liste proposée." in text_of(huge_mentor)
    cancel = site.clients["Ines"].post(
        f"/mentoring/requests/{request_id}/cancel",
        data={"csrf_token": flows.csrf(site.clients["Ines"])},
    )
    assert cancel.status_code == 404
    assert site.clients["Ines"].get(f"/mentoring/requests/{request_id}").status_code == 404

    after = await snapshot(site.server.data_dir)
    assert after == stored
    assert (request_id, site.ids["Claire"], AttemptOutcome.PENDING.value) in after.attempts
    inbox = site.clients["Claire"].get("/mentoring/inbox")
    assert f'data-request-id="{request_id}"' in inbox.text
    assert "Gestion de classe en 4e" in inbox.text


def test_pages_render_in_french(site: Site) -> None:
    client = site.clients["Claire"]
    paths = [
        "/mentoring",
        "/mentoring/offer",
        "/mentoring/request",
        "/mentoring/inbox",
        "/mentoring/notifications",
    ]
    for path in paths:
        page = client.get(path)
        assert page.status_code == 200, path
        assert '<html lang="fr">' in page.text
        assert 'href="/mentoring">Mentorat' in page.text
    proposals = client.post(
        "/mentoring/request",
        data={"csrf_token": flows.csrf(client), "action": "preview", **flows.need_form()},
    )
    assert "Proposé pour : même discipline, même niveau" in proposals.text
    teacher_batch = client.get("/mentoring/operator/batch")
    assert teacher_batch.status_code == 403


def test_offer_pause_and_withdraw(site: Site) -> None:
    karim = site.clients["Karim"]

    def act(action: str) -> httpx.Response:
        return karim.post(
            "/mentoring/offer/status", data={"csrf_token": flows.csrf(karim), "action": action}
        )

    def ranking() -> list[int]:
        return flows.proposed_mentor_ids(site.clients["Ines"], flows.need_form())

    assert act("pause").status_code == 303
    assert site.ids["Karim"] not in ranking()
    assert "En pause" in karim.get("/mentoring/offer").text
    assert act("resume").status_code == 303
    assert site.ids["Karim"] in ranking()
    unknown = act("delete-everything")
    assert unknown.status_code == 400
    assert "Cette action sur l'offre n'existe pas." in text_of(unknown)


def test_read_mark_rejects_bad_body(site: Site) -> None:
    client = site.clients["Claire"]
    token = flows.csrf(client)
    url = "/api/mentoring/conversations/AAAAAAAAAAAAAAAA/read"
    cases = [
        (b"not json", "Le corps de la requête n'est pas un objet JSON valide."),
        (b'{"seq": -1}', "Le champ seq doit être un entier entre 0 et 2147483647."),
        (b'{"seq": true}', "Le champ seq doit être un entier entre 0 et 2147483647."),
        (b"[]", "Le champ seq doit être un entier entre 0 et 2147483647."),
    ]
    for body, message in cases:
        response = client.post(url, content=body, headers={"X-CSRF-Token": token})
        assert response.status_code == 400
        assert response.json()["error"]["message"] == message
    no_token = client.post(url, json={"seq": 1})
    assert no_token.status_code == 403
