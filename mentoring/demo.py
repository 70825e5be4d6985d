"""Demo mentoring for `server.py --demo`: the demo host offers to mentor, and the demo
colleague, a new teacher, has sent her a request she can accept from her requests page.

Running it again at each start is safe: an existing offer is kept as it is, and no
request is sent while the colleague has one open or a mentorship with the host.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from mentoring.models import Mentorship
from mentoring.service import MentoringService
from mentoring.validation import NeedDetails, OfferDetails

logger = logging.getLogger(__name__)

DEMO_OFFER = OfferDetails(
    disciplines=("francais", "histoire-geographie"),
    levels=("college",),
    academy="lyon",
    presentation=(
        "Professeure de lettres en collège depuis douze ans. J'aide volontiers pour la "
        "gestion de classe, les premières séquences et les rencontres avec les familles."
    ),
    capacity=3,
)
DEMO_NEED = NeedDetails(
    discipline="francais",
    level="college",
    academy="lyon",
    need="Gestion de classe en 4e : comment installer le calme en début d'heure ?",
)


async def ensure_mentoring_demo(
    mentoring: MentoringService, mentor_id: int, mentee_id: int
) -> None:
    """Give the demo mentor an offer and the demo mentee a request addressed to her."""
    if await mentoring.get_offer(mentor_id) is None:
        await mentoring.save_offer(mentor_id, DEMO_OFFER)
    if await mentoring.open_request_of(mentee_id) is not None:
        return
    async with mentoring.database.session() as session:
        paired = await session.scalar(
            select(Mentorship.id).where(
                Mentorship.mentor_id == mentor_id, Mentorship.mentee_id == mentee_id
            )
        )
    if paired is not None:
        return
    proposed = {card.mentor_id for card in await mentoring.propose_mentors(mentee_id, DEMO_NEED)}
    if mentor_id not in proposed:
        # The offer was paused or is full: the demo leaves the mentee without a request.
        logger.info("demo mentoring: mentor=%s not proposed, no request sent", mentor_id)
        return
    request = await mentoring.send_request(mentee_id, DEMO_NEED, mentor_id)
    logger.info("demo mentoring: request=%s sent to mentor=%s", request.id, mentor_id)
