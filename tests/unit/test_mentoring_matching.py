"""Mentor matching: pair score, ranking for one request, batch assignment."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mentoring.assignment_flow import Edge, solve_assignment
from mentoring.matching import (
    Assignment,
    BatchObjective,
    BatchResult,
    HelpRequest,
    MentorProfile,
    RankedMentor,
    UnmatchedReason,
    assign_batch,
    rank_mentors,
    score_pair,
)

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)

ALL_REASONS = {
    "même discipline",
    "mentor polyvalent du premier degré",
    "même niveau",
    "même académie",
    "même fuseau horaire",
    "aucun mentoré en cours",
    "un seul mentoré en cours",
}


def mentor(
    mentor_id: int,
    disciplines: str = "mathematiques",
    levels: str = "college",
    academy: str = "lyon",
    capacity: int = 1,
    active_mentees: int = 0,
) -> MentorProfile:
    """Build a profile; `disciplines` and `levels` are space-separated ids."""
    return MentorProfile(
        mentor_id=mentor_id,
        disciplines=frozenset(disciplines.split()),
        levels=frozenset(levels.split()),
        academy=academy,
        capacity=capacity,
        active_mentees=active_mentees,
    )


def request(
    request_id: int,
    discipline: str = "mathematiques",
    level: str = "college",
    academy: str = "lyon",
    minutes: int = 0,
    excluded: Sequence[int] = (),
) -> HelpRequest:
    """Build a request created `minutes` after T0."""
    return HelpRequest(
        request_id=request_id,
        created_at=T0 + timedelta(minutes=minutes),
        discipline=discipline,
        level=level,
        academy=academy,
        excluded_mentor_ids=frozenset(excluded),
    )


# ---------------------------------------------------------------------------
# pair score

SCORE_CASES = [
    pytest.param(
        request(1),
        mentor(2),
        110,
        ("même discipline", "même niveau", "même académie", "aucun mentoré en cours"),
        id="everything-in-common",
    ),
    pytest.param(
        request(1, level="lycee-general-technologique"),
        mentor(2, active_mentees=1, capacity=3),
        65,
        ("même discipline", "même académie", "un seul mentoré en cours"),
        id="other-level-one-mentee",
    ),
    pytest.param(
        request(1, academy="paris"),
        mentor(2, academy="lyon", active_mentees=2, capacity=3),
        85,
        ("même discipline", "même niveau", "même fuseau horaire"),
        id="other-academy-same-zone-two-mentees",
    ),
    pytest.param(
        request(1, academy="la-reunion"),
        mentor(2, academy="paris", active_mentees=3, capacity=5),
        80,
        ("même discipline", "même niveau"),
        id="other-zone-busy-mentor",
    ),
    pytest.param(
        request(1, academy="guadeloupe"),
        mentor(2, academy="martinique"),
        95,
        ("même discipline", "même niveau", "même fuseau horaire", "aucun mentoré en cours"),
        id="antilles-share-a-zone",
    ),
    pytest.param(
        request(1, academy="mayotte"),
        mentor(2, academy="la-reunion"),
        90,
        ("même discipline", "même niveau", "aucun mentoré en cours"),
        id="mayotte-and-reunion-differ",
    ),
    pytest.param(
        request(1, discipline="polyvalent", level="maternelle"),
        mentor(2, disciplines="polyvalent", levels="maternelle elementaire"),
        110,
        ("même discipline", "même niveau", "même académie", "aucun mentoré en cours"),
        id="polyvalent-request",
    ),
    pytest.param(
        request(1, discipline="anglais", level="elementaire"),
        mentor(2, disciplines="polyvalent", levels="elementaire"),
        100,
        (
            "mentor polyvalent du premier degré",
            "même niveau",
            "même académie",
            "aucun mentoré en cours",
        ),
        id="primary-subject-polyvalent-mentor",
    ),
    pytest.param(
        request(1, discipline="anglais", level="elementaire"),
        mentor(2, disciplines="polyvalent anglais", levels="college"),
        70,
        ("même discipline", "même académie", "aucun mentoré en cours"),
        id="same-discipline-beats-polyvalent",
    ),
    pytest.param(
        request(1, discipline="anglais", level="maternelle", academy="creteil"),
        mentor(2, disciplines="polyvalent", levels="elementaire", active_mentees=1, capacity=2),
        40,
        ("mentor polyvalent du premier degré", "même fuseau horaire", "un seul mentoré en cours"),
        id="lowest-compatible-score",
    ),
    pytest.param(
        request(1, discipline="anglais", level="college"),
        mentor(2, disciplines="polyvalent", levels="college"),
        None,
        (),
        id="polyvalent-not-for-secondary",
    ),
    pytest.param(
        request(1, discipline="francais"),
        mentor(2),
        None,
        (),
        id="level-and-academy-alone-incompatible",
    ),
    pytest.param(
        request(1, discipline="polyvalent", level="elementaire"),
        mentor(2, disciplines="francais", levels="elementaire"),
        None,
        (),
        id="subject-mentor-not-for-polyvalent",
    ),
]


@pytest.mark.parametrize(("help_request", "profile", "expected", "reasons"), SCORE_CASES)
def test_score_pair_table(
    help_request: HelpRequest,
    profile: MentorProfile,
    expected: int | None,
    reasons: tuple[str, ...],
) -> None:
    assert score_pair(help_request, profile) == expected

    ranked = rank_mentors(help_request, [profile])
    if expected is None:
        assert ranked == []
    else:
        assert ranked == [RankedMentor(profile.mentor_id, expected, reasons)]


def test_score_weights_order_criteria() -> None:
    """Same level outweighs académie, time zone and load together; académie outweighs
    time zone and load together."""
    same_level_far_busy = score_pair(
        request(1, academy="la-reunion"), mentor(2, academy="paris", active_mentees=3, capacity=5)
    )
    other_level_best_rest = score_pair(
        request(1, level="lycee-professionnel", academy="la-reunion"),
        mentor(2, academy="la-reunion"),
    )
    assert same_level_far_busy is not None
    assert other_level_best_rest is not None
    assert same_level_far_busy > other_level_best_rest

    same_academy_busy = score_pair(request(1), mentor(2, active_mentees=3, capacity=5))
    same_zone_free = score_pair(request(1, academy="paris"), mentor(2))
    assert same_academy_busy is not None
    assert same_zone_free is not None
    assert same_academy_busy > same_zone_free


# ---------------------------------------------------------------------------
# ranking


def test_rank_mentors_order_and_filters() -> None:
    mentors = [
        mentor(7, academy="paris"),  # 95
        mentor(3, academy="paris"),  # 95, lower id first
        mentor(5),  # 110
        mentor(9, capacity=2, active_mentees=2),  # full
        mentor(4, capacity=1, active_mentees=3),  # capacity lowered below its load
        mentor(8),  # excluded: declined earlier
        mentor(6, disciplines="francais"),  # incompatible
        mentor(2, levels="lycee-professionnel", active_mentees=1, capacity=2),  # 65
        mentor(1),  # the requester, who is a mentor too
    ]
    ranked = rank_mentors(request(1, excluded=[8, 1]), mentors)

    assert [candidate.mentor_id for candidate in ranked] == [5, 3, 7, 2]
    assert [candidate.score for candidate in ranked] == [110, 95, 95, 65]
    for candidate in ranked:
        assert set(candidate.reasons) <= ALL_REASONS
    assert ranked[0].reasons[0] == "même discipline"
    assert ranked[-1].reasons == ("même discipline", "même académie", "un seul mentoré en cours")


def test_rank_mentors_none_compatible() -> None:
    assert rank_mentors(request(1, discipline="philosophie"), [mentor(2), mentor(3)]) == []
    assert rank_mentors(request(1), []) == []


def test_rank_mentors_duplicate_mentor_rejected() -> None:
    with pytest.raises(ValueError, match="mentor 2 is listed twice"):
        rank_mentors(request(1), [mentor(2), mentor(2, academy="paris")])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: mentor(1, disciplines="cuisine"), "unknown discipline 'cuisine'"),
        (lambda: mentor(1, levels="lycee"), "unknown level 'lycee'"),
        (lambda: mentor(1, academy="caen"), "unknown academy 'caen'"),
        (lambda: mentor(1, disciplines=""), "disciplines is empty"),
        (lambda: mentor(1, levels=""), "levels is empty"),
        (lambda: mentor(1, capacity=-1), "must be at least 0"),
        (lambda: mentor(1, active_mentees=-1), "must be at least 0"),
        (lambda: request(1, discipline="cuisine"), "unknown discipline 'cuisine'"),
        (lambda: request(1, level="lycee"), "unknown level 'lycee'"),
        (lambda: request(1, academy="rouen"), "unknown academy 'rouen'"),
    ],
)
def test_profiles_invalid_values_rejected(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_request_naive_created_at_rejected() -> None:
    with pytest.raises(ValueError, match="has no time zone"):
        HelpRequest(1, datetime(2026, 9, 1, 8, 0), "francais", "college", "lyon")


# ---------------------------------------------------------------------------
# random instances for the batch

DISCIPLINE_CHOICES = ["polyvalent", "francais", "mathematiques", "anglais"]
LEVEL_CHOICES = ["maternelle", "elementaire", "college", "lycee-general-technologique"]
ACADEMY_CHOICES = ["lyon", "paris", "la-reunion", "mayotte"]


@st.composite
def mentor_lists(draw: st.DrawFn, max_size: int, max_capacity: int) -> list[MentorProfile]:
    ids = draw(st.lists(st.integers(1, 50), unique=True, max_size=max_size))
    profiles = []
    for mentor_id in ids:
        capacity = draw(st.integers(0, max_capacity))
        profiles.append(
            MentorProfile(
                mentor_id=mentor_id,
                disciplines=draw(st.frozensets(st.sampled_from(DISCIPLINE_CHOICES), min_size=1)),
                levels=draw(st.frozensets(st.sampled_from(LEVEL_CHOICES), min_size=1)),
                academy=draw(st.sampled_from(ACADEMY_CHOICES)),
                capacity=capacity,
                active_mentees=draw(st.integers(0, capacity + 1)),
            )
        )
    return profiles


@st.composite
def request_lists(draw: st.DrawFn, max_size: int, min_size: int = 0) -> list[HelpRequest]:
    ids = draw(st.lists(st.integers(100, 200), unique=True, min_size=min_size, max_size=max_size))
    return [
        HelpRequest(
            request_id=request_id,
            # few distinct times, so that ties on created_at happen
            created_at=T0 + timedelta(minutes=draw(st.integers(0, 3))),
            discipline=draw(st.sampled_from(DISCIPLINE_CHOICES)),
            level=draw(st.sampled_from(LEVEL_CHOICES)),
            academy=draw(st.sampled_from(ACADEMY_CHOICES)),
            excluded_mentor_ids=draw(st.frozensets(st.integers(1, 50), max_size=3)),
        )
        for request_id in ids
    ]


@settings(max_examples=300, deadline=None)
@given(
    help_request=request_lists(min_size=1, max_size=1),
    mentors=mentor_lists(max_size=8, max_capacity=2),
)
def test_rank_mentors_agrees_with_score_pair(
    help_request: list[HelpRequest], mentors: list[MentorProfile]
) -> None:
    ranked = rank_mentors(help_request[0], mentors)

    expected = sorted(
        (-score, profile.mentor_id)
        for profile in mentors
        if (score := score_pair(help_request[0], profile)) is not None
        and profile.free_places > 0
        and profile.mentor_id not in help_request[0].excluded_mentor_ids
    )
    assert [(-candidate.score, candidate.mentor_id) for candidate in ranked] == expected
    for candidate in ranked:
        assert set(candidate.reasons) <= ALL_REASONS
        assert len(candidate.reasons) == len(set(candidate.reasons))


def check_batch_valid(
    result: BatchResult, requests: Sequence[HelpRequest], mentors: Sequence[MentorProfile]
) -> None:
    """Assert everything a batch must satisfy whatever its objective."""
    requests_by_id = {help_request.request_id: help_request for help_request in requests}
    mentors_by_id = {profile.mentor_id: profile for profile in mentors}

    matched_ids = [assignment.request_id for assignment in result.assignments]
    unmatched_ids = [entry.request_id for entry in result.unmatched]
    assert sorted(matched_ids + unmatched_ids) == sorted(requests_by_id)

    places_used = Counter(assignment.mentor_id for assignment in result.assignments)
    for mentor_id, used in places_used.items():
        profile = mentors_by_id[mentor_id]
        assert used <= profile.free_places, mentor_id
        assert profile.active_mentees + used <= max(profile.capacity, profile.active_mentees)

    for assignment in result.assignments:
        help_request = requests_by_id[assignment.request_id]
        assert assignment.mentor_id not in help_request.excluded_mentor_ids
        assert score_pair(help_request, mentors_by_id[assignment.mentor_id]) == assignment.score
    assert result.total_score == sum(assignment.score for assignment in result.assignments)

    def request_order(request_id: int) -> tuple[datetime, int]:
        return (requests_by_id[request_id].created_at, request_id)

    assert matched_ids == sorted(matched_ids, key=request_order)
    assert unmatched_ids == sorted(unmatched_ids, key=request_order)

    for entry in result.unmatched:
        assert entry.message == entry.reason.label
        help_request = requests_by_id[entry.request_id]
        compatible = [
            profile for profile in mentors if score_pair(help_request, profile) is not None
        ]
        allowed = [
            profile
            for profile in compatible
            if profile.mentor_id not in help_request.excluded_mentor_ids
        ]
        with_places = [profile for profile in allowed if profile.free_places > 0]
        # no compatible mentor keeps a free place while this request waits
        for profile in with_places:
            assert places_used[profile.mentor_id] == profile.free_places
        if entry.reason is UnmatchedReason.NO_MENTOR_IN_DISCIPLINE:
            assert compatible == []
        elif entry.reason is UnmatchedReason.ALL_COMPATIBLE_EXCLUDED:
            assert compatible != []
            assert allowed == []
        elif entry.reason is UnmatchedReason.COMPATIBLE_MENTORS_FULL:
            assert allowed != []
            assert with_places == []
        else:
            assert entry.reason is UnmatchedReason.PLACES_GIVEN_TO_OTHERS
            assert with_places != []


@settings(max_examples=200, deadline=None)
@given(
    requests=request_lists(max_size=40),
    mentors=mentor_lists(max_size=15, max_capacity=3),
    objective=st.sampled_from(BatchObjective),
)
def test_assign_batch_respects_capacities(
    requests: list[HelpRequest], mentors: list[MentorProfile], objective: BatchObjective
) -> None:
    result = assign_batch(requests, mentors, objective)

    check_batch_valid(result, requests, mentors)


@settings(max_examples=100, deadline=None)
@given(
    requests=request_lists(max_size=40),
    mentors=mentor_lists(max_size=15, max_capacity=3),
    seed=st.integers(0, 2**32 - 1),
    objective=st.sampled_from(BatchObjective),
)
def test_assign_batch_ignores_input_order(
    requests: list[HelpRequest], mentors: list[MentorProfile], seed: int, objective: BatchObjective
) -> None:
    first = assign_batch(requests, mentors, objective)
    again = assign_batch(requests, mentors, objective)
    shuffled_requests = list(requests)
    shuffled_mentors = list(mentors)
    random.Random(seed).shuffle(shuffled_requests)
    random.Random(seed + 1).shuffle(shuffled_mentors)
    shuffled = assign_batch(shuffled_requests, shuffled_mentors, objective)

    assert again == first
    assert shuffled == first


# ---------------------------------------------------------------------------
# optimality against brute force


def feasible_assignments(
    requests: Sequence[HelpRequest], mentors: Sequence[MentorProfile]
) -> Iterator[list[tuple[int, int, int]]]:
    """Yield every feasible set of (request index, mentor index, score) pairs."""
    free = [profile.free_places for profile in mentors]
    chosen: list[tuple[int, int, int]] = []

    def extend(position: int) -> Iterator[list[tuple[int, int, int]]]:
        if position == len(requests):
            yield list(chosen)
            return
        yield from extend(position + 1)  # this request left unmatched
        help_request = requests[position]
        for mentor_index, profile in enumerate(mentors):
            if free[mentor_index] == 0 or profile.mentor_id in help_request.excluded_mentor_ids:
                continue
            score = score_pair(help_request, profile)
            if score is None:
                continue
            free[mentor_index] -= 1
            chosen.append((position, mentor_index, score))
            yield from extend(position + 1)
            chosen.pop()
            free[mentor_index] += 1

    yield from extend(0)


def brute_force_best(
    requests: Sequence[HelpRequest], mentors: Sequence[MentorProfile], objective: BatchObjective
) -> tuple[tuple[int, ...], int]:
    """Return the best objective value and, among optimal assignments, the least sum of
    tie ranks (request position in creation order plus mentor position by id)."""
    request_order = sorted(requests, key=lambda item: (item.created_at, item.request_id))
    mentor_order = sorted(mentors, key=lambda item: item.mentor_id)
    best: tuple[tuple[int, ...], int] | None = None
    for pairs in feasible_assignments(request_order, mentor_order):
        total = sum(score for _, _, score in pairs)
        value = (len(pairs), total) if objective is BatchObjective.MOST_MATCHES else (total,)
        tie = sum(request_index + mentor_index for request_index, mentor_index, _ in pairs)
        if best is None or (value, -tie) > (best[0], -best[1]):
            best = (value, tie)
    assert best is not None
    return best


def result_value(
    result: BatchResult,
    requests: Sequence[HelpRequest],
    mentors: Sequence[MentorProfile],
    objective: BatchObjective,
) -> tuple[tuple[int, ...], int]:
    request_order = sorted(requests, key=lambda item: (item.created_at, item.request_id))
    request_rank = {item.request_id: rank for rank, item in enumerate(request_order)}
    mentor_rank = {
        item.mentor_id: rank
        for rank, item in enumerate(sorted(mentors, key=lambda item: item.mentor_id))
    }
    if objective is BatchObjective.MOST_MATCHES:
        value: tuple[int, ...] = (len(result.assignments), result.total_score)
    else:
        value = (result.total_score,)
    tie = sum(
        request_rank[assignment.request_id] + mentor_rank[assignment.mentor_id]
        for assignment in result.assignments
    )
    return value, tie


@settings(max_examples=300, deadline=None)
@given(
    requests=request_lists(max_size=6),
    mentors=mentor_lists(max_size=4, max_capacity=2),
    objective=st.sampled_from(BatchObjective),
)
def test_assign_batch_matches_brute_force(
    requests: list[HelpRequest], mentors: list[MentorProfile], objective: BatchObjective
) -> None:
    result = assign_batch(requests, mentors, objective)

    check_batch_valid(result, requests, mentors)
    assert result_value(result, requests, mentors, objective) == brute_force_best(
        requests, mentors, objective
    )


BRUTE_FORCE_CASES = [
    pytest.param(
        [
            request(1, discipline="anglais", level="elementaire", minutes=0),
            request(2, discipline="anglais", academy="paris", minutes=5),
        ],
        [
            mentor(1, disciplines="anglais"),
            mentor(2, disciplines="polyvalent", levels="maternelle", academy="mayotte"),
        ],
        id="not-first-come-first-served",
    ),
    pytest.param(
        [request(1), request(2), request(3, level="lycee-general-technologique")],
        [mentor(1, capacity=2), mentor(2, levels="lycee-general-technologique")],
        id="capacity-two-shared",
    ),
    pytest.param(
        [
            request(1, discipline="anglais", level="elementaire"),
            request(2, discipline="polyvalent", level="elementaire"),
            request(3, discipline="anglais", level="college", academy="paris"),
        ],
        [
            mentor(1, disciplines="polyvalent", levels="elementaire"),
            mentor(2, disciplines="anglais polyvalent", levels="college elementaire"),
        ],
        id="polyvalent-cover",
    ),
    pytest.param(
        [request(1, excluded=[1]), request(2, minutes=1), request(3, minutes=2, excluded=[2])],
        [mentor(1), mentor(2), mentor(3, academy="paris")],
        id="exclusions",
    ),
    pytest.param(
        [request(n, minutes=n % 3, academy="paris" if n % 2 else "lyon") for n in range(1, 7)],
        [
            mentor(1, capacity=2),
            mentor(2, academy="paris"),
            mentor(3, capacity=2, academy="mayotte"),
        ],
        id="six-requests-tight",
    ),
]


@pytest.mark.parametrize(("requests", "mentors"), BRUTE_FORCE_CASES)
@pytest.mark.parametrize("objective", list(BatchObjective))
def test_assign_batch_small_cases_optimal(
    requests: list[HelpRequest], mentors: list[MentorProfile], objective: BatchObjective
) -> None:
    result = assign_batch(requests, mentors, objective)

    check_batch_valid(result, requests, mentors)
    assert result_value(result, requests, mentors, objective) == brute_force_best(
        requests, mentors, objective
    )


def test_assign_batch_beats_greedy() -> None:
    """First come, first served gives mentor 1 to request 1 (70) and leaves request 2,
    which only mentor 1 can take, unmatched. The batch serves both."""
    requests = [
        request(1, discipline="anglais", level="elementaire", minutes=0),
        request(2, discipline="anglais", academy="paris", minutes=5),
    ]
    mentors = [
        mentor(1, disciplines="anglais"),
        mentor(
            2,
            disciplines="polyvalent",
            levels="maternelle",
            academy="mayotte",
            active_mentees=2,
            capacity=3,
        ),
    ]
    assert score_pair(requests[0], mentors[0]) == 70
    assert score_pair(requests[0], mentors[1]) == 30
    assert score_pair(requests[1], mentors[0]) == 95
    assert score_pair(requests[1], mentors[1]) is None

    result = assign_batch(requests, mentors)

    assert result.assignments == [Assignment(1, 2, 30), Assignment(2, 1, 95)]
    assert result.unmatched == []
    assert result.total_score == 125


def test_batch_objectives_differ_on_trade_off() -> None:
    """Request 1 scores 100 with mentor 1 and 40 with mentor 2; request 2 fits mentor 1
    only, at 45. Most matches serves both; total score alone serves request 1 best."""
    requests = [
        request(1, discipline="anglais", level="elementaire"),
        request(2, discipline="anglais", level="college", academy="paris", minutes=1),
    ]
    mentors = [
        mentor(1, disciplines="anglais", levels="elementaire", active_mentees=2, capacity=3),
        mentor(2, disciplines="polyvalent", levels="maternelle", academy="mayotte"),
    ]
    assert score_pair(requests[0], mentors[0]) == 100
    assert score_pair(requests[0], mentors[1]) == 40
    assert score_pair(requests[1], mentors[0]) == 45

    most = assign_batch(requests, mentors, BatchObjective.MOST_MATCHES)
    total = assign_batch(requests, mentors, BatchObjective.TOTAL_SCORE)

    assert most.assignments == [Assignment(1, 2, 40), Assignment(2, 1, 45)]
    assert most.total_score == 85
    assert total.assignments == [Assignment(1, 1, 100)]
    assert total.total_score == 100
    assert [entry.request_id for entry in total.unmatched] == [2]
    assert total.unmatched[0].reason is UnmatchedReason.PLACES_GIVEN_TO_OTHERS


# ---------------------------------------------------------------------------
# tie order


def test_ties_earliest_request_served() -> None:
    requests = [request(5, minutes=10), request(4, minutes=3), request(3, minutes=3)]

    result = assign_batch(requests, [mentor(1)])

    assert result.assignments == [Assignment(3, 1, 110)]
    assert [entry.request_id for entry in result.unmatched] == [4, 5]


def test_ties_lowest_mentor_id_used() -> None:
    result = assign_batch([request(1)], [mentor(9), mentor(4), mentor(6)])

    assert result.assignments == [Assignment(1, 4, 110)]


def test_ties_earliest_request_best_mentor() -> None:
    requests = [request(1, minutes=2), request(2, minutes=1)]
    mentors = [mentor(1, academy="paris"), mentor(2)]

    result = assign_batch(requests, mentors)

    assert result.assignments == [Assignment(2, 2, 110), Assignment(1, 1, 95)]


def test_ties_across_groups_earliest_served() -> None:
    # Both requests score 95 with the only mentor: the earlier one is served.
    requests = [request(1, academy="paris", minutes=4), request(2, academy="creteil", minutes=1)]

    result = assign_batch(requests, [mentor(1)])

    assert result.assignments == [Assignment(2, 1, 95)]


# ---------------------------------------------------------------------------
# unmatched reasons


def test_unmatched_reasons() -> None:
    requests = [
        request(1, discipline="philosophie", level="lycee-general-technologique"),
        request(2, discipline="anglais", excluded=[20]),
        request(3, discipline="francais"),
        request(4, discipline="mathematiques", minutes=1),
        request(5, discipline="mathematiques", minutes=2),
        request(6, discipline="anglais", level="elementaire", excluded=[20]),
    ]
    mentors = [
        mentor(20, disciplines="anglais", capacity=1),
        mentor(30, disciplines="francais", capacity=2, active_mentees=2),
        mentor(40, disciplines="mathematiques", capacity=1),
        mentor(50, disciplines="polyvalent", levels="elementaire", capacity=1, active_mentees=1),
    ]

    result = assign_batch(requests, mentors)

    assert result.assignments == [Assignment(4, 40, 110)]
    reasons = {entry.request_id: (entry.reason, entry.message) for entry in result.unmatched}
    assert reasons[1] == (
        UnmatchedReason.NO_MENTOR_IN_DISCIPLINE,
        "aucun mentor disponible dans cette discipline",
    )
    assert reasons[2] == (
        UnmatchedReason.ALL_COMPATIBLE_EXCLUDED,
        "tous les mentors compatibles ont déjà été sollicités pour cette demande",
    )
    assert reasons[3] == (
        UnmatchedReason.COMPATIBLE_MENTORS_FULL,
        "toutes les places des mentors compatibles sont prises",
    )
    assert reasons[5] == (
        UnmatchedReason.PLACES_GIVEN_TO_OTHERS,
        "les places libres des mentors compatibles ont été attribuées à d'autres demandes du lot",
    )
    # Mentor 20 is excluded but the polyvalent mentor 50 is compatible, and full.
    assert reasons[6][0] is UnmatchedReason.COMPATIBLE_MENTORS_FULL
    assert len(result.unmatched) == 5


def test_assign_batch_empty_inputs() -> None:
    assert assign_batch([], []) == BatchResult([], [], 0)
    assert assign_batch([], [mentor(1)]) == BatchResult([], [], 0)

    alone = assign_batch([request(1)], [])
    assert alone.assignments == []
    assert [entry.reason for entry in alone.unmatched] == [UnmatchedReason.NO_MENTOR_IN_DISCIPLINE]


def test_assign_batch_duplicates_rejected() -> None:
    with pytest.raises(ValueError, match="request is listed twice"):
        assign_batch([request(1), request(1, minutes=3)], [mentor(1)])
    with pytest.raises(ValueError, match="mentor 1 is listed twice"):
        assign_batch([request(1)], [mentor(1), mentor(1)])


def test_solve_assignment_rejects_non_positive_score() -> None:
    with pytest.raises(ValueError, match="score must be positive"):
        solve_assignment([[0]], [1], [Edge(0, 0, 0)], most_matches=True)
