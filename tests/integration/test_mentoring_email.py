"""Notification e-mails of mentoring, from a real server process to a real SMTP server
(aiosmtpd on a loopback port): French subject and body for every notice to the new
teacher, and the operator's batch page."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support import mentoring_flows as flows
from tests.support.clients import Account, csrf_from, sign_up
from tests.support.mail_server import MailServer, ReceivedMail
from tests.support.processes import PROJECT_DIR, ServerProcess, free_port

PASSWORD = "correct horse"
# The links in e-mails start with the configured public origin. An https:// one would
# make the session cookie Secure, which the plain-HTTP test clients cannot send back.
PORT = free_port()
SITE_URL = f"http://127.0.0.1:{PORT}"
SIGNATURE = "L'équipe de Veillée"


@dataclass
class Site:
    server: ServerProcess
    mail: MailServer
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def join(self, name: str) -> httpx.Client:
        client = sign_up(self.server.url, Account(address(name), PASSWORD, name))
        self.clients[name] = client
        return client


def address(name: str) -> str:
    return f"{name.lower()}@example.org"


def assert_french_mail(mail: ReceivedMail, name: str) -> None:
    """The e-mail greets its reader and is signed, in French, with no English left in."""
    assert mail.message["Content-Language"] == "fr"
    assert mail.body.startswith(f"Bonjour {name},")
    assert mail.body.rstrip().endswith(SIGNATURE)
    prose = re.sub(r"https?://\S+", "", mail.body)
    for english in ("Hello", "request", "your", "Dear"):
        assert english not in prose


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    mail = MailServer()
    server = ServerProcess(
        tmp_path_factory.mktemp("mentoring-email"),
        extra_args=[
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(mail.port),
            "--smtp-from",
            "Veillée <mentorat@veillee.example.org>",
            "--site-url",
            SITE_URL,
        ],
        port=PORT,
    )
    result = Site(server, mail)
    try:
        for name in ("Claire", "Karim"):
            result.join(name)
        assert flows.save_offer(result.clients["Claire"]).status_code == 303
        assert flows.save_offer(result.clients["Karim"], academy="grenoble").status_code == 303
        yield result
    finally:
        for client in result.clients.values():
            client.close()
        server.stop()
        mail.stop()


def test_accepted_request_mailed(site: Site) -> None:
    lea = site.join("Lea")
    mentor_ids = flows.proposed_mentor_ids(lea, flows.need_form())
    request_id = flows.request_id_of(flows.send_request(lea, flows.need_form(), mentor_ids[0]))

    to_mentor = site.mail.wait_for_mail(address("Claire"), "Nouvelle demande de mentorat")
    assert_french_mail(to_mentor, "Claire")
    assert "Lea vous demande de l'accompagner" in to_mentor.body
    assert "Gestion de classe en 4e" in to_mentor.body
    assert f"{SITE_URL}/mentoring/inbox" in to_mentor.body
    assert to_mentor.message["From"] == "Veillée <mentorat@veillee.example.org>"

    conversation_id = flows.conversation_id_of(
        flows.answer(site.clients["Claire"], request_id, accept=True)
    )

    accepted = site.mail.wait_for_mail(address("Lea"), "Votre demande de mentorat est acceptée")
    assert_french_mail(accepted, "Lea")
    assert "Claire accepte de vous accompagner (Mathématiques, collège, académie de Lyon)" in (
        accepted.body
    )
    assert f"{SITE_URL}/mentoring/conversations/{conversation_id}" in accepted.body
    assert lea.get("/api/mentoring/summary").json()["unread_notifications"] == 1
    listed = lea.get("/mentoring/notifications")
    assert "Votre demande de mentorat est acceptée" in listed.text
    assert "Nouveau" in listed.text
    assert lea.get("/api/mentoring/summary").json()["unread_notifications"] == 0


def test_declined_then_waiting_mailed(site: Site) -> None:
    ines = site.join("Ines")
    mentor_ids = flows.proposed_mentor_ids(ines, flows.need_form())
    assert len(mentor_ids) == 2
    request_id = flows.request_id_of(flows.send_request(ines, flows.need_form(), mentor_ids[0]))

    assert flows.answer(site.clients["Claire"], request_id, accept=False).status_code == 303

    passed = site.mail.wait_for_mail(
        address("Ines"), "Votre demande de mentorat est transmise à un autre mentor"
    )
    assert_french_mail(passed, "Ines")
    assert "Claire n'est pas disponible et a décliné votre demande" in passed.body
    assert "transmise à Karim" in passed.body
    assert f"{SITE_URL}/mentoring/requests/{request_id}" in passed.body

    assert flows.answer(site.clients["Karim"], request_id, accept=False).status_code == 303

    waiting = site.mail.wait_for_mail(
        address("Ines"), "Votre demande de mentorat attend la prochaine répartition"
    )
    assert_french_mail(waiting, "Ines")
    assert "Karim n'est pas disponible" in waiting.body
    assert "prochaine répartition" in waiting.body
    page = ines.get(f"/mentoring/requests/{request_id}")
    assert "En attente de la prochaine répartition" in page.text


def test_matched_by_operator_batch_mailed(site: Site) -> None:
    """An operator starts the batch from the page: the waiting teacher of the previous
    test is matched with a mentor who offered since, and both are told."""
    paul = site.join("Paul")
    assert flows.save_offer(paul, academy="paris").status_code == 303
    operator = site.join("Olga")
    refused = operator.get("/mentoring/operator/batch")
    assert refused.status_code == 403
    assert "réservée aux opératrices et opérateurs" in refused.text

    granted = subprocess.run(
        [
            sys.executable,
            "-m",
            "accounts.roles",
            "grant",
            address("Olga"),
            "operator",
            "--data-dir",
            str(site.server.data_dir),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert granted.returncode == 0, granted.stderr
    assert "olga@example.org a maintenant le rôle operator." in granted.stdout
    page = operator.get("/mentoring/operator/batch")
    assert page.status_code == 200
    assert "data-waiting-count>1<" in page.text

    dry = operator.post(
        "/mentoring/operator/batch", data={"csrf_token": csrf_from(page.text), "dry_run": "1"}
    )
    assert dry.status_code == 200
    assert "Résultat de la simulation" in dry.text
    assert "data-matched-request=" in dry.text
    assert site.mail.to(address("Paul")) == []

    run = operator.post("/mentoring/operator/batch", data={"csrf_token": csrf_from(page.text)})

    assert run.status_code == 200
    assert "Résultat de la répartition" in run.text
    assert "data-waiting-count>0<" in run.text
    matched = site.mail.wait_for_mail(address("Ines"), "Un mentor vous accompagne désormais")
    assert_french_mail(matched, "Ines")
    assert "a été confiée à Paul" in matched.body
    assert f"{SITE_URL}/mentoring/conversations/" in matched.body
    to_mentor = site.mail.wait_for_mail(address("Paul"), "Une nouvelle personne à accompagner")
    assert_french_mail(to_mentor, "Paul")
    conversations = site.clients["Ines"].get("/api/mentoring/conversations").json()
    assert [item["other_name"] for item in conversations["conversations"]] == ["Paul"]
