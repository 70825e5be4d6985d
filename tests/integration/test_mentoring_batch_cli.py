"""`python -m mentoring.batch` on a seeded database: a dry run stores nothing, a real
run respects every mentor's capacity, reports who was matched and who was not with
the reason, and e-mails each matched teacher through a real SMTP server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.database import Database
from core.mail import Mailer
from core.settings import SmtpSettings
from mentoring.mail import EmailOutbox
from mentoring.models import MentoringRequest, Mentorship, RequestStatus
from mentoring.service import MentoringService
from mentoring.validation import parse_need, parse_offer
from migrations.runner import upgrade_to_head
from tests.support.chat_clients import create_people, database_in
from tests.support.mail_server import MailServer
from tests.support.processes import PROJECT_DIR

CLI_TIMEOUT_SECS = 120


@dataclass
class Seeded:
    """Six waiting requests, then the mathematics mentors.

    Ana, Bea, Cem and Fay need mathematics in collège (Cem in Grenoble); Dan needs
    philosophy, which nobody mentors; Eva needs English, and Gus, the only English
    mentor, already declined her request. Claire (Lyon) has 2 places, Karim
    (Grenoble) 1: four mathematics requests for three places.
    """

    data_dir: Path
    ids: dict[str, int]
    request_ids: dict[str, int]


async def _seed(data_dir: Path) -> Seeded:
    database = database_in(data_dir)
    try:
        await upgrade_to_head(database, data_dir)
        people = await create_people(
            database, ["Ana", "Bea", "Cem", "Dan", "Eva", "Fay", "Gus", "Claire", "Karim"]
        )
        ids = {person.name: person.id for person in people}
        service = MentoringService(
            database,
            EmailOutbox(database, Mailer(SmtpSettings())),
            answer_timeout_secs=3600,
        )

        async def offer(name: str, discipline: str, academy: str, capacity: int) -> None:
            details = parse_offer(
                disciplines=[discipline],
                levels=["college"],
                academy=academy,
                presentation="Au plaisir d'échanger.",
                capacity=str(capacity),
            )
            await service.save_offer(ids[name], details)

        async def ask(name: str, discipline: str, academy: str = "lyon") -> int:
            need = parse_need(discipline=discipline, level="college", academy=academy, need="Aide")
            return (await service.send_request(ids[name], need, None)).id

        # Eva's request goes to Gus, who declines it: it waits, Gus excluded.
        await offer("Gus", "anglais", "lyon", 1)
        eva_need = parse_need(
            discipline="anglais", level="college", academy="lyon", need="Oral en anglais"
        )
        eva = await service.send_request(ids["Eva"], eva_need, ids["Gus"])
        await service.answer_request(ids["Gus"], eva.id, accept=False)

        request_ids = {
            "Ana": await ask("Ana", "mathematiques"),
            "Bea": await ask("Bea", "mathematiques"),
            "Cem": await ask("Cem", "mathematiques", "grenoble"),
            "Dan": await ask("Dan", "philosophie"),
            "Fay": await ask("Fay", "mathematiques"),
            "Eva": eva.id,
        }
        await offer("Claire", "mathematiques", "lyon", 2)
        await offer("Karim", "mathematiques", "grenoble", 1)
        return Seeded(data_dir, ids, request_ids)
    finally:
        await database.dispose()


@pytest.fixture
async def seeded(data_dir: Path) -> AsyncIterator[Seeded]:
    yield await _seed(data_dir)


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    yield server
    server.stop()


def run_cli(data_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mentoring.batch", "--data-dir", str(data_dir), *options],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECS,
        check=False,
    )


async def _mentorships_by_mentor(data_dir: Path) -> dict[int, int]:
    database: Database = database_in(data_dir)
    try:
        async with database.session() as session:
            rows = await session.execute(
                select(Mentorship.mentor_id, func.count()).group_by(Mentorship.mentor_id)
            )
            return {mentor_id: count for mentor_id, count in rows}
    finally:
        await database.dispose()


async def _request_statuses(data_dir: Path) -> dict[int, RequestStatus]:
    database = database_in(data_dir)
    try:
        async with database.session() as session:
            rows = await session.execute(select(MentoringRequest.id, MentoringRequest.status))
            return {request_id: status for request_id, status in rows}
    finally:
        await database.dispose()


async def test_batch_dry_run_stores_nothing(seeded: Seeded) -> None:
    result = run_cli(seeded.data_dir, "--dry-run")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Simulation : rien n'a été enregistré")
    assert "Demandes en attente : 6. Attribuées : 3. Sans mentor : 3." in result.stdout
    assert await _mentorships_by_mentor(seeded.data_dir) == {}
    statuses = await _request_statuses(seeded.data_dir)
    assert set(statuses.values()) == {RequestStatus.WAITING}


async def test_batch_respects_capacity_and_reports(seeded: Seeded, mail_server: MailServer) -> None:
    result = run_cli(
        seeded.data_dir, "--smtp-host", "127.0.0.1", "--smtp-port", str(mail_server.port)
    )

    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert "Demandes en attente : 6. Attribuées : 3. Sans mentor : 3. Score total : 330." in output
    lines = output.splitlines()
    assert (
        f"  demande {seeded.request_ids['Ana']} · Ana (Mathématiques, collège, académie de Lyon)"
        " → Claire (score 110)"
    ) in lines
    matched = [line for line in lines if "→" in line]
    assert len(matched) == 3
    assert any(line.startswith(f"  demande {seeded.request_ids['Cem']} · Cem") for line in matched)
    assert any("Cem" in line and "→ Karim" in line for line in matched)
    assert sum("→ Claire" in line for line in matched) == 2
    by_request = {rid: name for name, rid in seeded.request_ids.items()}
    unmatched = {by_request[int(line.split()[1])]: line for line in lines if line.endswith("]")}
    assert set(unmatched) == {"Dan", "Eva", "Fay"}
    assert (
        "aucun mentor disponible dans cette discipline [no_mentor_in_discipline]"
        in (unmatched["Dan"])
    )
    assert "déjà été sollicités pour cette demande [all_compatible_excluded]" in unmatched["Eva"]
    assert "[places_given_to_others]" in unmatched["Fay"]

    counts = await _mentorships_by_mentor(seeded.data_dir)
    assert counts == {seeded.ids["Claire"]: 2, seeded.ids["Karim"]: 1}
    statuses = await _request_statuses(seeded.data_dir)
    for name in ("Dan", "Eva", "Fay"):
        assert statuses[seeded.request_ids[name]] is RequestStatus.WAITING
    for name in ("Ana", "Bea", "Cem"):
        assert statuses[seeded.request_ids[name]] is RequestStatus.MATCHED
        mail = mail_server.wait_for_mail(
            f"{name.lower()}@example.org", "Un mentor vous accompagne désormais"
        )
        assert mail.body.startswith(f"Bonjour {name},")
    assert mail_server.to("fay@example.org") == []

    again = run_cli(seeded.data_dir)
    assert again.returncode == 0, again.stderr
    assert "Demandes en attente : 3. Attribuées : 0. Sans mentor : 3." in again.stdout
    assert await _mentorships_by_mentor(seeded.data_dir) == counts


def test_batch_without_data_dir_fails_clearly(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "missing")

    assert result.returncode == 2
    assert "no data folder" in result.stderr
