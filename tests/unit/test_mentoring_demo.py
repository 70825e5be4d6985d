"""Demo mentoring created at each start with --demo: the host offers to mentor, the
colleague's request waits for her, and a second start changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.database import Database
from core.mail import Mailer
from core.settings import SmtpSettings
from live.demo import ensure_demo_data
from mentoring.demo import DEMO_OFFER, ensure_mentoring_demo
from mentoring.mail import EmailOutbox
from mentoring.models import MentoringRequest, OfferStatus, RequestStatus
from mentoring.service import MentoringService
from tests.support.mail_server import MailServer


@pytest.fixture(scope="module")
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    yield server
    server.stop()


def mentoring_service(database: Database, mail_server: MailServer) -> MentoringService:
    outbox = EmailOutbox(database, Mailer(SmtpSettings(host="127.0.0.1", port=mail_server.port)))
    return MentoringService(database, outbox, answer_timeout_secs=3600.0)


async def test_demo_request_pending_for_host(
    database: Database, mail_server: MailServer, tmp_path: Path
) -> None:
    demo = await ensure_demo_data(database, tmp_path / "data")
    service = mentoring_service(database, mail_server)

    await ensure_mentoring_demo(service, demo.host.id, demo.viewer.id)
    await ensure_mentoring_demo(service, demo.host.id, demo.viewer.id)

    offer = await service.get_offer(demo.host.id)
    assert offer is not None
    assert offer.status is OfferStatus.ACTIVE
    assert tuple(offer.disciplines) == DEMO_OFFER.disciplines
    assert await service.count_pending_for(demo.host.id) == 1
    async with database.session() as session:
        requests = await session.scalar(select(func.count()).select_from(MentoringRequest))
        request = await session.scalar(select(MentoringRequest))
    assert requests == 1
    assert request is not None
    assert request.mentee_id == demo.viewer.id
    assert request.status is RequestStatus.PENDING


async def test_demo_paused_offer_sends_no_request(
    database: Database, mail_server: MailServer, tmp_path: Path
) -> None:
    demo = await ensure_demo_data(database, tmp_path / "data")
    service = mentoring_service(database, mail_server)
    await service.save_offer(demo.host.id, DEMO_OFFER)
    await service.set_offer_status(demo.host.id, OfferStatus.PAUSED)

    await ensure_mentoring_demo(service, demo.host.id, demo.viewer.id)

    assert await service.open_request_of(demo.viewer.id) is None
