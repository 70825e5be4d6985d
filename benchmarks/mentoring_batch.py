"""Measure the start-of-year batch assignment of mentors against first come, first served.

    .venv/bin/python benchmarks/mentoring_batch.py [--requests 5000] [--mentors 2000]
        [--seed 2026] [--repeat 3]

Builds a seeded random batch: disciplines weighted toward français, mathématiques,
histoire-géographie and polyvalent, académies weighted by an estimate of their size,
capacities 1 to 3, some mentors already busy, a few requests with declined mentors.
Then times `assign_batch` for each objective (median of `--repeat` runs) and measures
its memory: the Python heap peak seen by tracemalloc in a separate run, and the
process's peak resident set size, which also counts OR-Tools' C++ allocations. The
greedy alternative serves the requests in creation order, each one taking its
best-scored mentor with a free place, which is what teachers picking the first
mentor that `rank_mentors` proposes would get.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from mentoring.catalog import ACADEMIES, DISCIPLINES, POLYVALENT, PRIMARY_LEVELS  # noqa: E402
from mentoring.matching import (  # noqa: E402
    Assignment,
    BatchObjective,
    BatchResult,
    HelpRequest,
    MentorProfile,
    assign_batch,
    score_pair,
)

# Relative weights of the disciplines among new teachers and mentors, rough estimates:
# polyvalent (primary school) gets 27 % of the total, the four heaviest together 52 %.
DISCIPLINE_WEIGHTS: dict[str, float] = defaultdict(
    lambda: 1.0,
    {
        POLYVALENT: 30.0,
        "francais": 10.0,
        "mathematiques": 10.0,
        "histoire-geographie": 7.0,
        "anglais": 6.0,
        "eps": 5.0,
        "svt": 4.0,
        "physique-chimie": 4.0,
        "espagnol": 3.0,
        "technologie": 2.0,
        "lettres-histoire": 2.0,
        "maths-physique-chimie": 2.0,
        "enseignement-professionnel": 4.0,
        "documentation": 1.5,
        "ses": 1.5,
        "philosophie": 1.5,
        "allemand": 1.5,
        "economie-gestion": 1.5,
    },
)

# Levels where each discipline is taught; the others are taught in collège and lycée.
DISCIPLINE_LEVELS: dict[str, tuple[str, ...]] = {
    POLYVALENT: ("maternelle", "elementaire"),
    "technologie": ("college",),
    "philosophie": ("lycee-general-technologique",),
    "ses": ("lycee-general-technologique",),
    "nsi": ("lycee-general-technologique",),
    "sciences-ingenieur": ("lycee-general-technologique",),
    "biotechnologies": ("lycee-general-technologique",),
    "sciences-medico-sociales": ("lycee-general-technologique", "lycee-professionnel"),
    "economie-gestion": ("lycee-general-technologique", "lycee-professionnel"),
    "lettres-histoire": ("lycee-professionnel",),
    "maths-physique-chimie": ("lycee-professionnel",),
    "enseignement-professionnel": ("lycee-professionnel",),
}
SECONDARY_LEVELS = ("college", "lycee-general-technologique", "lycee-professionnel")

# Relative sizes of the académies, an estimate in the spirit of their pupil numbers:
# the largest near 8, most metropolitan ones 2 to 4, the smallest territories below 1.
ACADEMY_WEIGHTS: dict[str, float] = defaultdict(
    lambda: 2.5,
    {
        "versailles": 8.0,
        "creteil": 7.0,
        "lille": 6.0,
        "aix-marseille": 5.0,
        "lyon": 5.0,
        "nantes": 5.0,
        "toulouse": 4.5,
        "bordeaux": 4.5,
        "montpellier": 4.0,
        "rennes": 4.0,
        "grenoble": 4.5,
        "normandie": 4.5,
        "paris": 3.5,
        "nancy-metz": 3.5,
        "orleans-tours": 3.5,
        "nice": 3.0,
        "strasbourg": 3.0,
        "corse": 0.5,
        "limoges": 1.0,
        "guyane": 1.0,
        "mayotte": 1.0,
        "guadeloupe": 0.8,
        "martinique": 0.6,
        "la-reunion": 2.0,
        "nouvelle-caledonie": 0.6,
        "polynesie-francaise": 0.6,
        "wallis-et-futuna": 0.1,
        "saint-pierre-et-miquelon": 0.05,
    },
)


def weighted_choice(rng: random.Random, weights: dict[str, float], keys: Sequence[str]) -> str:
    return rng.choices(keys, weights=[weights[key] for key in keys])[0]


def levels_of(discipline: str) -> tuple[str, ...]:
    return DISCIPLINE_LEVELS.get(discipline, SECONDARY_LEVELS[:2])


def make_mentors(rng: random.Random, count: int) -> list[MentorProfile]:
    disciplines = list(DISCIPLINES)
    academies = list(ACADEMIES)
    mentors = []
    for mentor_id in range(1, count + 1):
        main = weighted_choice(rng, DISCIPLINE_WEIGHTS, disciplines)
        chosen = {main}
        # some teach a second subject, such as a primary teacher who also teaches English
        if rng.random() < 0.15:
            chosen.add(weighted_choice(rng, DISCIPLINE_WEIGHTS, disciplines))
        possible_levels = sorted({level for item in chosen for level in levels_of(item)})
        levels = rng.sample(possible_levels, rng.randint(1, min(2, len(possible_levels))))
        capacity = rng.randint(1, 3)
        active = 0 if rng.random() < 0.6 else rng.randint(0, capacity)
        mentors.append(
            MentorProfile(
                mentor_id=mentor_id,
                disciplines=frozenset(chosen),
                levels=frozenset(levels),
                academy=weighted_choice(rng, ACADEMY_WEIGHTS, academies),
                capacity=capacity,
                active_mentees=active,
            )
        )
    return mentors


def make_requests(
    rng: random.Random, count: int, mentors: Sequence[MentorProfile]
) -> list[HelpRequest]:
    disciplines = list(DISCIPLINES)
    academies = list(ACADEMIES)
    mentors_by_discipline: dict[str, list[int]] = defaultdict(list)
    for mentor in mentors:
        for discipline in mentor.disciplines:
            mentors_by_discipline[discipline].append(mentor.mentor_id)
    # requests arrive during the three weeks before the batch
    opening = datetime(2026, 8, 17, 8, 0, tzinfo=UTC)
    requests = []
    for request_id in range(1, count + 1):
        discipline = weighted_choice(rng, DISCIPLINE_WEIGHTS, disciplines)
        excluded: set[int] = set()
        # about 5 % were already declined by one or two mentors
        if rng.random() < 0.05 and mentors_by_discipline[discipline]:
            excluded.update(rng.sample(mentors_by_discipline[discipline], 1))
            excluded.update(rng.sample(mentors_by_discipline[discipline], 1))
        requests.append(
            HelpRequest(
                request_id=request_id,
                created_at=opening + timedelta(seconds=rng.randint(0, 21 * 24 * 3600)),
                discipline=discipline,
                level=rng.choice(levels_of(discipline)),
                academy=weighted_choice(rng, ACADEMY_WEIGHTS, academies),
                excluded_mentor_ids=frozenset(excluded),
            )
        )
    return requests


def assign_greedy(requests: Sequence[HelpRequest], mentors: Sequence[MentorProfile]) -> BatchResult:
    """Serve requests in creation order, each taking its best mentor with a free place."""
    free = {mentor.mentor_id: mentor.free_places for mentor in mentors}
    by_discipline: dict[str, list[MentorProfile]] = defaultdict(list)
    for mentor in mentors:
        for discipline in mentor.disciplines:
            by_discipline[discipline].append(mentor)
    assignments: list[Assignment] = []
    for request in sorted(requests, key=lambda item: (item.created_at, item.request_id)):
        candidates = list(by_discipline[request.discipline])
        if request.level in PRIMARY_LEVELS:
            candidates += by_discipline[POLYVALENT]
        best: tuple[int, int] | None = None
        for mentor in candidates:
            if free[mentor.mentor_id] == 0 or mentor.mentor_id in request.excluded_mentor_ids:
                continue
            score = score_pair(request, mentor)
            if score is not None and (best is None or (score, -mentor.mentor_id) > best):
                best = (score, -mentor.mentor_id)
        if best is not None:
            free[-best[1]] -= 1
            assignments.append(Assignment(request.request_id, -best[1], best[0]))
    return BatchResult(assignments, [], sum(item.score for item in assignments))


@dataclass
class Measure:
    name: str
    result: BatchResult
    median_secs: float
    python_peak_mib: float | None = None


def timed(name: str, run: Callable[[], BatchResult], repeat: int, trace_memory: bool) -> Measure:
    durations = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        durations.append(time.perf_counter() - started)
    assert result is not None
    measure = Measure(name, result, statistics.median(durations))
    if trace_memory:
        # a separate run, since tracing slows Python allocations down
        tracemalloc.start()
        run()
        measure.python_peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return measure


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS missing from /proc/self/status")


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests in the batch")
    parser.add_argument("--mentors", type=int, default=2000, help="mentors in the batch")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the random batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each method")
    arguments = parser.parse_args()

    rng = random.Random(arguments.seed)
    mentors = make_mentors(rng, arguments.mentors)
    requests = make_requests(rng, arguments.requests, mentors)
    places = sum(mentor.free_places for mentor in mentors)
    print(
        f"{len(requests)} requests, {len(mentors)} mentors with {places} free places "
        f"(seed {arguments.seed})"
    )

    rss_before = current_rss_mib()
    measures = [
        timed(
            "batch, most matches",
            lambda: assign_batch(requests, mentors, BatchObjective.MOST_MATCHES),
            arguments.repeat,
            trace_memory=True,
        )
    ]
    rss_peak = peak_rss_mib()
    measures.append(
        timed(
            "batch, total score",
            lambda: assign_batch(requests, mentors, BatchObjective.TOTAL_SCORE),
            arguments.repeat,
            trace_memory=False,
        )
    )
    measures.append(
        timed("greedy, first come first served", lambda: assign_greedy(requests, mentors), 1, False)
    )

    greedy = measures[-1]
    print()
    print("| method | matched | total score | mean score | vs greedy | time s | vs greedy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for measure in measures:
        matched = len(measure.result.assignments)
        total = measure.result.total_score
        print(
            f"| {measure.name} | {matched} | {total} | {total / max(matched, 1):.1f} "
            f"| {total / greedy.result.total_score:.3f} | {measure.median_secs:.2f} "
            f"| {measure.median_secs / greedy.median_secs:.2f} |"
        )

    batch = measures[0]
    print()
    print(f"unmatched by reason ({batch.name}):")
    for reason, count in Counter(entry.reason for entry in batch.result.unmatched).most_common():
        print(f"  {reason.value}: {count}")
    print()
    print(f"Python heap peak during assign_batch (tracemalloc): {batch.python_peak_mib:.1f} MiB")
    print(
        f"process peak RSS: {rss_peak:.1f} MiB, of which {rss_peak - rss_before:.1f} MiB "
        f"above the RSS before the first assign_batch"
    )


if __name__ == "__main__":
    main()
