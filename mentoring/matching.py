"""Matching of help requests with mentors: one request's ranking and a batch assignment.

Pure domain logic: no database and no HTTP. The service loads profiles and requests,
calls these functions and stores what they return.

Score of a (request, mentor) pair, in points:

- compatibility, required: the mentor teaches the request's discipline (+40,
  "même discipline"), or the request is at a primary level (maternelle, élémentaire)
  and the mentor is "polyvalent" (+30, "mentor polyvalent du premier degré"), because
  a primary-school teacher teaches every subject. Any other pair is not compatible,
  whatever the level and the académie: a mentor who shares only the level cannot
  help with the subject a new teacher is struggling with.
- same level: +40 ("même niveau").
- same académie: +20 ("même académie"); otherwise the same time zone: +5 ("même
  fuseau horaire"), since conversations happen in both people's evenings. Zones are
  the same when their UTC offsets are equal both in January and in July.
- the mentor's load when the ranking or the batch starts: +10 with no active mentee
  ("aucun mentoré en cours"), +5 with one ("un seul mentoré en cours"), 0 above.

Discipline and level weigh the same and each outweighs everything below it together
(40 > 20 + 10 + 5), and the académie outweighs load and time zone together (20 > 15).
Scores range from 30 to 110.

The batch first matches as many requests as possible, then maximizes the total score
(`BatchObjective`). Ties between equally good batches are broken by the order of
requests (created_at, then request_id) and of mentors (mentor_id): see `assign_batch`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from mentoring.assignment_flow import Edge, solve_assignment
from mentoring.catalog import ACADEMIES, DISCIPLINES, LEVELS, POLYVALENT, PRIMARY_LEVELS

logger = logging.getLogger(__name__)

SAME_DISCIPLINE_POINTS = 40
POLYVALENT_PRIMARY_POINTS = 30
SAME_LEVEL_POINTS = 40
SAME_ACADEMY_POINTS = 20
SAME_TIME_ZONE_POINTS = 5
# Maps a mentor's number of active mentees to the points it adds (0 above one).
LOAD_POINTS = {0: 10, 1: 5}


def _clock(time_zone: str) -> tuple[timedelta | None, timedelta | None]:
    zone = ZoneInfo(time_zone)
    return (
        datetime(2026, 1, 15, 12, tzinfo=zone).utcoffset(),
        datetime(2026, 7, 15, 12, tzinfo=zone).utcoffset(),
    )


# Maps an académie id to its zone's UTC offsets in January and in July. Two académies
# share a time zone when both offsets are equal: Guadeloupe and Martinique have distinct
# IANA zones with one clock (UTC-4 all year).
_CLOCKS = {academy.id: _clock(academy.time_zone) for academy in ACADEMIES.values()}

REASON_SAME_DISCIPLINE = "même discipline"
REASON_POLYVALENT_PRIMARY = "mentor polyvalent du premier degré"
REASON_SAME_LEVEL = "même niveau"
REASON_SAME_ACADEMY = "même académie"
REASON_SAME_TIME_ZONE = "même fuseau horaire"
# Maps a mentor's number of active mentees to the reason shown for its load points.
LOAD_REASONS = {0: "aucun mentoré en cours", 1: "un seul mentoré en cours"}


def _check_known(kind: str, value: str, catalog: Iterable[str]) -> None:
    if value not in catalog:
        raise ValueError(f"unknown {kind} {value!r}: expected an id from mentoring.catalog")


@dataclass(frozen=True, slots=True)
class MentorProfile:
    """A mentor's profile as matching uses it. `active_mentees` counts pairs still running."""

    mentor_id: int
    disciplines: frozenset[str]
    levels: frozenset[str]
    academy: str
    capacity: int
    active_mentees: int = 0

    def __post_init__(self) -> None:
        if not self.disciplines:
            raise ValueError(f"mentor {self.mentor_id}: disciplines is empty")
        if not self.levels:
            raise ValueError(f"mentor {self.mentor_id}: levels is empty")
        for discipline in self.disciplines:
            _check_known("discipline", discipline, DISCIPLINES)
        for level in self.levels:
            _check_known("level", level, LEVELS)
        _check_known("academy", self.academy, ACADEMIES)
        if self.capacity < 0 or self.active_mentees < 0:
            raise ValueError(
                f"mentor {self.mentor_id}: capacity {self.capacity} and active_mentees "
                f"{self.active_mentees} must be at least 0"
            )

    @property
    def free_places(self) -> int:
        """Mentees the mentor can still take (0 when a lowered capacity is below the load)."""
        return max(0, self.capacity - self.active_mentees)


@dataclass(frozen=True, slots=True)
class HelpRequest:
    """A new teacher's request for a mentor, as matching uses it.

    `excluded_mentor_ids` lists the mentors never to propose: those who declined the
    request or let it time out, and the requester themselves if they are a mentor too.
    """

    request_id: int
    created_at: datetime
    discipline: str
    level: str
    academy: str
    excluded_mentor_ids: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        _check_known("discipline", self.discipline, DISCIPLINES)
        _check_known("level", self.level, LEVELS)
        _check_known("academy", self.academy, ACADEMIES)
        if self.created_at.tzinfo is None:
            raise ValueError(
                f"request {self.request_id}: created_at {self.created_at} has no time zone"
            )


@dataclass(frozen=True, slots=True)
class RankedMentor:
    """A mentor proposed for one request, with the French reasons shown to the teacher."""

    mentor_id: int
    score: int
    reasons: tuple[str, ...]


class Assignment(NamedTuple):
    request_id: int
    mentor_id: int
    score: int


class UnmatchedReason(enum.StrEnum):
    """Cause of a request left without a mentor by a batch, checked in this order."""

    # No mentor in the batch teaches the discipline (nor is polyvalent for a primary level).
    NO_MENTOR_IN_DISCIPLINE = "no_mentor_in_discipline"
    # Every such mentor is in the request's excluded_mentor_ids.
    ALL_COMPATIBLE_EXCLUDED = "all_compatible_excluded"
    # Every remaining compatible mentor was already full before the batch.
    COMPATIBLE_MENTORS_FULL = "compatible_mentors_full"
    # Compatible mentors had free places, and the batch gave all of them to other requests.
    PLACES_GIVEN_TO_OTHERS = "places_given_to_others"

    @property
    def label(self) -> str:
        """French sentence shown to the operator and the teacher."""
        return _UNMATCHED_LABELS[self]


_UNMATCHED_LABELS = {
    UnmatchedReason.NO_MENTOR_IN_DISCIPLINE: "aucun mentor disponible dans cette discipline",
    UnmatchedReason.ALL_COMPATIBLE_EXCLUDED: (
        "tous les mentors compatibles ont déjà été sollicités pour cette demande"
    ),
    UnmatchedReason.COMPATIBLE_MENTORS_FULL: (
        "toutes les places des mentors compatibles sont prises"
    ),
    UnmatchedReason.PLACES_GIVEN_TO_OTHERS: (
        "les places libres des mentors compatibles ont été attribuées à d'autres demandes du lot"
    ),
}


class Unmatched(NamedTuple):
    request_id: int
    reason: UnmatchedReason
    message: str


@dataclass(slots=True)
class BatchResult:
    """Outcome of `assign_batch`, both lists in request order (created_at, request_id)."""

    assignments: list[Assignment]
    unmatched: list[Unmatched]
    total_score: int


class BatchObjective(enum.StrEnum):
    """Quantity that `assign_batch` maximizes first."""

    # The number of matched requests, then the total score among those batches. An
    # unmatched new teacher waits for the next batch, which no gain in score makes up for.
    MOST_MATCHES = "most_matches"
    # The total score alone, which may leave a request unmatched so that another one
    # gets a much better mentor (110 + 0 beats 40 + 45).
    TOTAL_SCORE = "total_score"


def _score_parts(
    discipline: str, level: str, academy: str, mentor: MentorProfile
) -> list[tuple[int, str]] | None:
    """Return the (points, reason) terms of a pair's score, or None if not compatible."""
    parts: list[tuple[int, str]] = []
    if discipline in mentor.disciplines:
        parts.append((SAME_DISCIPLINE_POINTS, REASON_SAME_DISCIPLINE))
    elif level in PRIMARY_LEVELS and POLYVALENT in mentor.disciplines:
        parts.append((POLYVALENT_PRIMARY_POINTS, REASON_POLYVALENT_PRIMARY))
    else:
        return None

    if level in mentor.levels:
        parts.append((SAME_LEVEL_POINTS, REASON_SAME_LEVEL))

    if academy == mentor.academy:
        parts.append((SAME_ACADEMY_POINTS, REASON_SAME_ACADEMY))
    elif _CLOCKS[academy] == _CLOCKS[mentor.academy]:
        parts.append((SAME_TIME_ZONE_POINTS, REASON_SAME_TIME_ZONE))

    if mentor.active_mentees in LOAD_POINTS:
        parts.append((LOAD_POINTS[mentor.active_mentees], LOAD_REASONS[mentor.active_mentees]))
    return parts


def _pair_score(discipline: str, level: str, academy: str, mentor: MentorProfile) -> int | None:
    """Return the sum of `_score_parts` without building the reasons, for the batch."""
    if discipline in mentor.disciplines:
        score = SAME_DISCIPLINE_POINTS
    elif level in PRIMARY_LEVELS and POLYVALENT in mentor.disciplines:
        score = POLYVALENT_PRIMARY_POINTS
    else:
        return None
    if level in mentor.levels:
        score += SAME_LEVEL_POINTS
    if academy == mentor.academy:
        score += SAME_ACADEMY_POINTS
    elif _CLOCKS[academy] == _CLOCKS[mentor.academy]:
        score += SAME_TIME_ZONE_POINTS
    return score + LOAD_POINTS.get(mentor.active_mentees, 0)


def score_pair(request: HelpRequest, mentor: MentorProfile) -> int | None:
    """Return the pair's score (see the module docstring), or None if not compatible.

    Ignores exclusions and free places: `rank_mentors` and `assign_batch` check those.
    """
    return _pair_score(request.discipline, request.level, request.academy, mentor)


def _check_unique_mentors(mentors: Sequence[MentorProfile]) -> None:
    seen: set[int] = set()
    for mentor in mentors:
        if mentor.mentor_id in seen:
            raise ValueError(f"mentor {mentor.mentor_id} is listed twice")
        seen.add(mentor.mentor_id)


def rank_mentors(request: HelpRequest, mentors: Sequence[MentorProfile]) -> list[RankedMentor]:
    """Rank the mentors who could take `request`, best first.

    Leaves out incompatible mentors, excluded ones and those without a free place.
    Orders by score, highest first, then by mentor_id. Reasons follow the order of
    the score's terms: discipline, level, académie or time zone, load.
    """
    _check_unique_mentors(mentors)
    ranked: list[RankedMentor] = []
    for mentor in mentors:
        if mentor.mentor_id in request.excluded_mentor_ids or mentor.free_places == 0:
            continue
        parts = _score_parts(request.discipline, request.level, request.academy, mentor)
        if parts is None:
            continue
        ranked.append(
            RankedMentor(
                mentor_id=mentor.mentor_id,
                score=sum(points for points, _ in parts),
                reasons=tuple(reason for _, reason in parts),
            )
        )
    ranked.sort(key=lambda candidate: (-candidate.score, candidate.mentor_id))
    return ranked


@dataclass(slots=True)
class _RequestGroup:
    """Requests that every mentor scores alike: same discipline, level, académie and
    exclusions among the batch's mentors."""

    discipline: str
    level: str
    academy: str
    excluded_mentor_ids: frozenset[int]
    # Positions of the requests in (created_at, request_id) order, ascending.
    request_ranks: list[int] = field(default_factory=list)


def _index_by_discipline(mentors: Sequence[MentorProfile]) -> dict[str, list[MentorProfile]]:
    """Index mentors by each discipline they teach, keeping the order of `mentors`."""
    index: dict[str, list[MentorProfile]] = defaultdict(list)
    for mentor in mentors:
        for discipline in mentor.disciplines:
            index[discipline].append(mentor)
    return index


def _compatible_mentors(
    group: _RequestGroup, index: dict[str, list[MentorProfile]]
) -> list[MentorProfile]:
    """Return the mentors of `index` compatible with the group, by mentor_id, excluded
    ones included."""
    found = {mentor.mentor_id: mentor for mentor in index.get(group.discipline, ())}
    if group.level in PRIMARY_LEVELS:
        for mentor in index.get(POLYVALENT, ()):
            found.setdefault(mentor.mentor_id, mentor)
    return [found[mentor_id] for mentor_id in sorted(found)]


def _unmatched_reason(
    group: _RequestGroup, index: dict[str, list[MentorProfile]]
) -> UnmatchedReason:
    compatible = _compatible_mentors(group, index)
    if not compatible:
        return UnmatchedReason.NO_MENTOR_IN_DISCIPLINE
    allowed = [m for m in compatible if m.mentor_id not in group.excluded_mentor_ids]
    if not allowed:
        return UnmatchedReason.ALL_COMPATIBLE_EXCLUDED
    if all(mentor.free_places == 0 for mentor in allowed):
        return UnmatchedReason.COMPATIBLE_MENTORS_FULL
    return UnmatchedReason.PLACES_GIVEN_TO_OTHERS


def assign_batch(
    requests: Sequence[HelpRequest],
    mentors: Sequence[MentorProfile],
    objective: BatchObjective = BatchObjective.MOST_MATCHES,
) -> BatchResult:
    """Assign a batch of waiting requests to mentors, each mentor within free places.

    Returns the best batch for `objective` (most matches, then highest total score,
    by default). Among equally good batches, the one chosen has the smallest sum of
    tie ranks over its pairs. A pair's tie rank is its request's position in
    (created_at, request_id) order plus its mentor's position in mentor_id order. So
    when not every request can be served, earlier requests are served first, and
    lower mentor ids are used first. The tie ranks are summed over the whole batch,
    not compared one pair at a time. Within requests that every mentor scores alike,
    the earliest request gets the highest-scoring mentor, then the lowest mentor_id.
    The result depends only on the contents of `requests` and `mentors`, not on
    their order.

    Raises ValueError when a request or a mentor is listed twice, and
    `assignment_flow.FlowError` if the solver fails.
    """
    started = time.perf_counter()
    request_order = sorted(requests, key=lambda request: (request.created_at, request.request_id))
    mentor_order = sorted(mentors, key=lambda mentor: mentor.mentor_id)
    _check_unique_mentors(mentor_order)
    if len({request.request_id for request in request_order}) != len(request_order):
        raise ValueError("a request is listed twice in the batch")

    # group the requests that every mentor scores alike
    mentor_ids = frozenset(mentor.mentor_id for mentor in mentor_order)
    groups: dict[tuple[str, str, str, frozenset[int]], _RequestGroup] = {}
    for rank, request in enumerate(request_order):
        key = (
            request.discipline,
            request.level,
            request.academy,
            request.excluded_mentor_ids & mentor_ids,
        )
        if key not in groups:
            groups[key] = _RequestGroup(*key)
        groups[key].request_ranks.append(rank)
    group_list = list(groups.values())

    # score each group against each compatible mentor with a free place
    mentor_rank = {mentor.mentor_id: rank for rank, mentor in enumerate(mentor_order)}
    open_index = _index_by_discipline([m for m in mentor_order if m.free_places > 0])
    edges: list[Edge] = []
    for group_number, group in enumerate(group_list):
        for mentor in _compatible_mentors(group, open_index):
            if mentor.mentor_id in group.excluded_mentor_ids:
                continue
            score = _pair_score(group.discipline, group.level, group.academy, mentor)
            if score is not None:
                edges.append(Edge(group_number, mentor_rank[mentor.mentor_id], score))

    flows = solve_assignment(
        [group.request_ranks for group in group_list],
        [mentor.free_places for mentor in mentor_order],
        edges,
        most_matches=objective is BatchObjective.MOST_MATCHES,
    )

    # give each group's places to its earliest requests, best place first
    places: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for edge, flow in zip(edges, flows, strict=True):
        mentor_id = mentor_order[edge.mentor].mentor_id
        places[edge.group].extend([(edge.score, mentor_id)] * flow)
    assignments: list[tuple[int, Assignment]] = []
    unmatched: list[tuple[int, Unmatched]] = []
    all_index = _index_by_discipline(mentor_order)
    for group_number, group in enumerate(group_list):
        group_places = sorted(places[group_number], key=lambda place: (-place[0], place[1]))
        matched_ranks = group.request_ranks[: len(group_places)]
        for rank, (score, mentor_id) in zip(matched_ranks, group_places, strict=True):
            request_id = request_order[rank].request_id
            assignments.append((rank, Assignment(request_id, mentor_id, score)))

        left_ranks = group.request_ranks[len(group_places) :]
        if left_ranks:
            reason = _unmatched_reason(group, all_index)
            for rank in left_ranks:
                request_id = request_order[rank].request_id
                unmatched.append((rank, Unmatched(request_id, reason, reason.label)))

    assignments.sort()
    unmatched.sort()
    result = BatchResult(
        assignments=[assignment for _, assignment in assignments],
        unmatched=[entry for _, entry in unmatched],
        total_score=sum(assignment.score for _, assignment in assignments),
    )
    logger.info(
        "batch of %d requests and %d mentors (%s): %d matched, %d unmatched, "
        "total score %d, %d edges, %.3f s",
        len(requests),
        len(mentors),
        objective.value,
        len(result.assignments),
        len(result.unmatched),
        result.total_score,
        len(edges),
        time.perf_counter() - started,
    )
    return result
