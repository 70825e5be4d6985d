"""The French notices of mentoring, stored in the notifications list and sent by e-mail.

Each notice is written once, with its subject and plain-text body, in the same
transaction as the change it reports; mentoring.mail sends the e-mail afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from core.timezones import TIME_ZONES, format_local
from mentoring.catalog import ACADEMIES, DISCIPLINES, LEVELS
from mentoring.models import MentoringRequest, Notification, NotificationKind

# The notifications page shows this many, the most recent first.
NOTIFICATIONS_PAGE_MAX = 100

SIGNATURE = "\n\nL'équipe de Veillée"


def need_summary(request: MentoringRequest) -> str:
    """Return "Mathématiques, collège, académie de Lyon" for a request."""
    discipline = DISCIPLINES[request.discipline].label if request.discipline in DISCIPLINES else "?"
    level = LEVELS[request.level].label.lower() if request.level in LEVELS else "?"
    academy = ACADEMIES[request.academy].label if request.academy in ACADEMIES else "?"
    return f"{discipline}, {level}, académie de {academy}"


def _deadline_text(deadline: datetime, recipient: User) -> str:
    zone_name = recipient.time_zone if recipient.time_zone in TIME_ZONES else None
    return format_local(deadline, zone_name)


def duration_text(secs: float) -> str:
    """Write a duration in French in its largest whole unit: "72 heures", "1 minute"."""
    for unit_secs, singular, plural in ((3600, "heure", "heures"), (60, "minute", "minutes")):
        if secs >= unit_secs:
            count = round(secs / unit_secs)
            return f"{count} {singular if count == 1 else plural}"
    count = max(1, round(secs))
    return f"{count} {'seconde' if count == 1 else 'secondes'}"


@dataclass(frozen=True)
class Notices:
    """Writes the notices: `site_url` makes the links absolute (no link without it),
    and `answer_delay` is the time a mentor has to answer, as the texts state it
    ("72 heures")."""

    site_url: str | None
    answer_delay: str

    def _link(self, path: str, label: str) -> str:
        if self.site_url:
            return f"\n\n{label} : {self.site_url.rstrip('/')}{path}"
        return "\n\nRetrouvez-la dans la rubrique Mentorat de Veillée."

    def _add(
        self,
        session: AsyncSession,
        recipient: User,
        kind: NotificationKind,
        subject: str,
        body: str,
        *,
        request_id: int | None = None,
        mentorship_id: int | None = None,
    ) -> Notification:
        notification = Notification(
            user_id=recipient.id,
            kind=kind,
            request_id=request_id,
            mentorship_id=mentorship_id,
            subject=subject,
            body=f"Bonjour {recipient.display_name},\n\n{body}{SIGNATURE}",
        )
        session.add(notification)
        return notification

    # to the new teacher

    def request_accepted(
        self,
        session: AsyncSession,
        mentee: User,
        mentor: User,
        request: MentoringRequest,
        *,
        conversation_path: str,
        mentorship_id: int,
    ) -> Notification:
        body = (
            f"{mentor.display_name} accepte de vous accompagner ({need_summary(request)}). "
            "Votre conversation privée est ouverte : vous seuls pouvez la lire."
            + self._link(conversation_path, "Pour écrire à votre mentor")
        )
        return self._add(
            session,
            mentee,
            NotificationKind.REQUEST_ACCEPTED,
            "Votre demande de mentorat est acceptée",
            body,
            request_id=request.id,
            mentorship_id=mentorship_id,
        )

    def passed_on(
        self,
        session: AsyncSession,
        mentee: User,
        previous: User,
        next_mentor: User,
        request: MentoringRequest,
        *,
        timed_out: bool,
    ) -> Notification:
        if timed_out:
            what = (
                f"{previous.display_name} n'a pas répondu à votre demande "
                f"dans le délai prévu de {self.answer_delay}."
            )
            kind = NotificationKind.TIMED_OUT_PASSED_ON
        else:
            what = f"{previous.display_name} n'est pas disponible et a décliné votre demande."
            kind = NotificationKind.DECLINED_PASSED_ON
        body = (
            f"{what} Votre demande ({need_summary(request)}) est maintenant transmise à "
            f"{next_mentor.display_name}, le mentor suivant dans le classement, qui a "
            f"{self.answer_delay} pour répondre. Vous n'avez rien à faire."
            + self._link(f"/mentoring/requests/{request.id}", "Pour suivre votre demande")
        )
        return self._add(
            session,
            mentee,
            kind,
            "Votre demande de mentorat est transmise à un autre mentor",
            body,
            request_id=request.id,
        )

    def waiting_for_batch(
        self, session: AsyncSession, mentee: User, request: MentoringRequest, cause: str
    ) -> Notification:
        """`cause` is the French sentence that says why no mentor is asked now."""
        body = (
            f"{cause} Aucun autre mentor disponible ne correspond à votre demande "
            f"({need_summary(request)}) pour le moment. Elle reste enregistrée et sera "
            "proposée lors de la prochaine répartition des demandes en attente, que l'équipe "
            "de Veillée organise notamment à la rentrée. Vous recevrez alors un message."
            + self._link(f"/mentoring/requests/{request.id}", "Pour suivre votre demande")
        )
        return self._add(
            session,
            mentee,
            NotificationKind.WAITING_FOR_BATCH,
            "Votre demande de mentorat attend la prochaine répartition",
            body,
            request_id=request.id,
        )

    def matched_by_batch(
        self,
        session: AsyncSession,
        mentee: User,
        mentor: User,
        request: MentoringRequest,
        *,
        conversation_path: str,
        mentorship_id: int,
    ) -> Notification:
        body = (
            "Lors de la répartition des demandes en attente, votre demande "
            f"({need_summary(request)}) a été confiée à {mentor.display_name}, qui vous "
            "accompagnera. Votre conversation privée est ouverte."
            + self._link(conversation_path, "Pour écrire à votre mentor")
        )
        return self._add(
            session,
            mentee,
            NotificationKind.MATCHED_BY_BATCH,
            "Un mentor vous accompagne désormais",
            body,
            request_id=request.id,
            mentorship_id=mentorship_id,
        )

    # to the mentor

    def new_request(
        self,
        session: AsyncSession,
        mentor: User,
        mentee: User,
        request: MentoringRequest,
        deadline: datetime,
    ) -> Notification:
        body = (
            f"{mentee.display_name} vous demande de l'accompagner ({need_summary(request)}). "
            f"Son besoin : « {request.need} »\n\n"
            f"Merci de répondre avant le {_deadline_text(deadline, mentor)}. Sans réponse, "
            "la demande sera transmise au mentor suivant."
            + self._link("/mentoring/inbox", "Pour accepter ou décliner")
        )
        return self._add(
            session,
            mentor,
            NotificationKind.NEW_REQUEST,
            "Nouvelle demande de mentorat",
            body,
            request_id=request.id,
        )

    def new_mentee_by_batch(
        self,
        session: AsyncSession,
        mentor: User,
        mentee: User,
        request: MentoringRequest,
        *,
        conversation_path: str,
        mentorship_id: int,
    ) -> Notification:
        body = (
            "Lors de la répartition des demandes en attente, la demande de "
            f"{mentee.display_name} ({need_summary(request)}) vous a été confiée. "
            f"Son besoin : « {request.need} »"
            + self._link(conversation_path, "Pour faire connaissance")
        )
        return self._add(
            session,
            mentor,
            NotificationKind.NEW_MENTEE_BY_BATCH,
            "Une nouvelle personne à accompagner",
            body,
            request_id=request.id,
            mentorship_id=mentorship_id,
        )

    def request_withdrawn(
        self, session: AsyncSession, mentor: User, mentee: User, request: MentoringRequest
    ) -> Notification:
        body = (
            f"{mentee.display_name} a retiré sa demande de mentorat ({need_summary(request)}). "
            "Vous n'avez plus à y répondre."
        )
        return self._add(
            session,
            mentor,
            NotificationKind.REQUEST_WITHDRAWN,
            "Une demande de mentorat a été retirée",
            body,
            request_id=request.id,
        )

    # to the other member

    def mentorship_ended(
        self,
        session: AsyncSession,
        recipient: User,
        ended_by: User,
        *,
        conversation_path: str,
        mentorship_id: int,
    ) -> Notification:
        body = (
            f"{ended_by.display_name} a mis fin au mentorat. Votre conversation reste "
            "lisible, mais elle n'accepte plus de messages."
            + self._link(conversation_path, "Pour relire la conversation")
        )
        return self._add(
            session,
            recipient,
            NotificationKind.MENTORSHIP_ENDED,
            "Fin du mentorat",
            body,
            mentorship_id=mentorship_id,
        )


async def list_notifications(session: AsyncSession, user_id: int) -> Sequence[Notification]:
    rows = await session.scalars(
        select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(NOTIFICATIONS_PAGE_MAX)
    )
    return rows.all()


async def count_unread(session: AsyncSession, user_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )
    return count or 0


async def mark_all_read(session: AsyncSession, user_id: int, now: datetime) -> None:
    """Mark every unread notification of `user_id` as read; the caller commits."""
    await session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=now)
    )
