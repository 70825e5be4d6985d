"""The start-of-year batch: assign every request waiting for a mentor at once, within
each mentor's free places, and report who was matched and who was not, and why.

Operators run it from the command line or from the batch page:

    python -m mentoring.batch --data-dir /srv/veillee --dry-run
    python -m mentoring.batch --data-dir /srv/veillee
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.database import Database
from core.mail import Mailer
from core.settings import DEFAULT_DATA_DIR, Settings
from mentoring import profiles
from mentoring.mail import EmailOutbox, add_smtp_arguments, smtp_settings_from
from mentoring.matching import assign_batch
from mentoring.models import (
    BatchRun,
    MentoringRequest,
    MentorOffer,
    Notification,
    OfferStatus,
    RequestStatus,
)
from mentoring.notifications import need_summary
from mentoring.service import MentoringService, conversation_path
from migrations.runner import upgrade_to_head

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchedLine:
    request_id: int
    mentee_name: str
    mentor_id: int
    mentor_name: str
    need: str
    score: int


@dataclass(frozen=True)
class UnmatchedLine:
    request_id: int
    mentee_name: str
    need: str
    reason_code: str
    # French, from mentoring.matching.
    reason: str


@dataclass
class BatchReport:
    """The outcome of a batch, or with `dry_run` the outcome it would have. Both lists
    are in request order."""

    dry_run: bool
    requests_count: int
    total_score: int
    matched: list[MatchedLine] = field(default_factory=list)
    unmatched: list[UnmatchedLine] = field(default_factory=list)
    batch_run_id: int | None = None


async def run_batch(
    service: MentoringService, *, dry_run: bool, started_by_id: int | None = None
) -> BatchReport:
    """Assign the waiting requests with `mentoring.matching.assign_batch`.

    Unless `dry_run`, every assignment becomes an active mentorship with its
    conversation, and both people are told; unmatched requests keep waiting. The
    batch runs in one transaction, so two batches never give away the same place.
    """
    started = time.monotonic()
    notifications: list[Notification] = []
    async with service.database.session() as session, session.begin():
        batch_run: BatchRun | None = None
        if not dry_run:
            # the first write of the transaction takes SQLite's write lock
            batch_run = BatchRun(started_by_id=started_by_id, started_at=service.now())
            session.add(batch_run)
            await session.flush()

        waiting = list(
            await session.scalars(
                select(MentoringRequest)
                .where(MentoringRequest.status == RequestStatus.WAITING)
                .order_by(MentoringRequest.created_at, MentoringRequest.id)
                .with_for_update()
            )
        )
        offers = list(
            await session.scalars(
                select(MentorOffer)
                .where(MentorOffer.status == OfferStatus.ACTIVE)
                .order_by(MentorOffer.user_id)
                .with_for_update()
            )
        )
        mentor_ids = [offer.user_id for offer in offers]
        active = await profiles.count_active_mentees(session, mentor_ids)
        pending = await profiles.count_pending_requests(session, mentor_ids)
        mentors = [
            profiles.profile_of(offer, active.get(offer.user_id, 0), pending.get(offer.user_id, 0))
            for offer in offers
        ]
        help_requests = [
            profiles.help_request_of(
                request.id,
                request.created_at,
                request,
                request.mentee_id,
                await profiles.asked_mentor_ids(session, request.id),
            )
            for request in waiting
        ]
        result = assign_batch(help_requests, mentors)

        requests_by_id = {request.id: request for request in waiting}
        user_ids = {request.mentee_id for request in waiting} | set(mentor_ids)
        names = await profiles.display_names(session, user_ids)
        report = BatchReport(
            dry_run=dry_run, requests_count=len(waiting), total_score=result.total_score
        )
        for assignment in result.assignments:
            request = requests_by_id[assignment.request_id]
            report.matched.append(
                MatchedLine(
                    request_id=request.id,
                    mentee_name=names.get(request.mentee_id, "?"),
                    mentor_id=assignment.mentor_id,
                    mentor_name=names.get(assignment.mentor_id, "?"),
                    need=need_summary(request),
                    score=assignment.score,
                )
            )
            if not dry_run:
                notifications += await _form_pair(service, session, request, assignment.mentor_id)
        for unmatched in result.unmatched:
            request = requests_by_id[unmatched.request_id]
            report.unmatched.append(
                UnmatchedLine(
                    request_id=request.id,
                    mentee_name=names.get(request.mentee_id, "?"),
                    need=need_summary(request),
                    reason_code=unmatched.reason.value,
                    reason=unmatched.message,
                )
            )

        if batch_run is not None:
            batch_run.requests_count = report.requests_count
            batch_run.matched_count = len(report.matched)
            batch_run.total_score = report.total_score
            report.batch_run_id = batch_run.id
        await session.flush()

    logger.info(
        "mentoring batch%s run=%s by=%s: %d request(s), %d matched, %d unmatched, "
        "total_score=%d in %.2f s",
        " (dry run)" if dry_run else "",
        report.batch_run_id,
        started_by_id,
        report.requests_count,
        len(report.matched),
        len(report.unmatched),
        report.total_score,
        time.monotonic() - started,
    )
    await service.send_emails(notifications)
    return report


async def _form_pair(
    service: MentoringService, session: AsyncSession, request: MentoringRequest, mentor_id: int
) -> list[Notification]:
    mentorship = service.match_request(request, mentor_id, by_batch=True)
    session.add(mentorship)
    await session.flush()
    mentee = await service.user(session, request.mentee_id)
    mentor = await service.user(session, mentor_id)
    path = conversation_path(mentorship)
    notices = service.notices
    return [
        notices.matched_by_batch(
            session, mentee, mentor, request, conversation_path=path, mentorship_id=mentorship.id
        ),
        notices.new_mentee_by_batch(
            session, mentor, mentee, request, conversation_path=path, mentorship_id=mentorship.id
        ),
    ]


def format_report(report: BatchReport) -> str:
    """Write the report in French, one line per request, for the terminal."""
    lines = []
    if report.dry_run:
        lines.append("Simulation : rien n'a été enregistré, personne n'a été prévenu.")
    lines.append(
        f"Demandes en attente : {report.requests_count}. Attribuées : {len(report.matched)}. "
        f"Sans mentor : {len(report.unmatched)}. Score total : {report.total_score}."
    )
    lines.append("")
    lines.append("Attribuées :" if report.matched else "Attribuées : aucune.")
    for line in report.matched:
        lines.append(
            f"  demande {line.request_id} · {line.mentee_name} ({line.need}) "
            f"→ {line.mentor_name} (score {line.score})"
        )
    lines.append("")
    lines.append("Sans mentor :" if report.unmatched else "Sans mentor : aucune.")
    for unmatched in report.unmatched:
        lines.append(
            f"  demande {unmatched.request_id} · {unmatched.mentee_name} ({unmatched.need}) : "
            f"{unmatched.reason} [{unmatched.reason_code}]"
        )
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mentoring.batch",
        description="Assign every mentoring request waiting for a mentor, within each "
        "mentor's free places, and print who was matched and who was not.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", DEFAULT_DATA_DIR)),
        help="the server's data folder, which holds the SQLite file (default: %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="SQLAlchemy async URL (default: SQLite in --data-dir)",
    )
    parser.add_argument(
        "--site-url",
        default=os.environ.get("SITE_URL"),
        help="public origin for the links in e-mails (default: no links)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the batch would do; store nothing and send no e-mail",
    )
    add_smtp_arguments(parser)
    return parser.parse_args(argv)


async def _main(arguments: argparse.Namespace) -> int:
    settings = Settings(
        data_dir=arguments.data_dir,
        database_url=arguments.database_url,
        site_url=arguments.site_url,
        smtp=smtp_settings_from(arguments),
    )
    database = Database(settings.resolved_database_url)
    try:
        await upgrade_to_head(database, settings.data_dir)
        service = MentoringService(
            database,
            EmailOutbox(database, Mailer(settings.smtp)),
            answer_timeout_secs=settings.mentoring_answer_timeout_secs,
            site_url=settings.site_url,
        )
        report = await run_batch(service, dry_run=arguments.dry_run)
    finally:
        await database.dispose()
    print(format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not arguments.data_dir.is_dir() and arguments.database_url is None:
        print(
            f"python -m mentoring.batch: no data folder at {arguments.data_dir}; "
            "pass the server's --data-dir",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_main(arguments))


if __name__ == "__main__":
    sys.exit(main())
