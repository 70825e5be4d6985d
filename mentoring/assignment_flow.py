"""Capacitated assignment of request groups to mentors, solved as a min-cost flow.

Independent of disciplines and académies: `mentoring.matching` turns a batch into
groups of interchangeable requests, mentors with free places and scored edges, and
this module finds the best flow with OR-Tools' SimpleMinCostFlow.

Graph: source -> group (one arc of capacity 1 per request, costing the request's tie
rank) -> mentor (one arc per scored edge) -> sink (capacity: the mentor's free places).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy
from ortools.graph.python import min_cost_flow


class Edge(NamedTuple):
    """A compatible (group, mentor) pair and its score."""

    group: int
    mentor: int
    score: int


class FlowError(RuntimeError):
    """The solver returned no optimal flow, e.g. when costs overflow its range."""


def solve_assignment(
    group_request_ranks: Sequence[Sequence[int]],
    mentor_free_places: Sequence[int],
    edges: Sequence[Edge],
    *,
    most_matches: bool,
) -> list[int]:
    """Return the number of requests sent along each edge, in the order of `edges`.

    `group_request_ranks[g]` lists the tie ranks of group g's requests in ascending
    order (their positions in the batch's request order). A mentor's tie rank is its
    index in `mentor_free_places`, and every score must be positive.

    With `most_matches`, the flow matches as many requests as possible, then maximizes
    the total score. Otherwise it maximizes the total score alone. In both cases it
    then minimizes the sum, over matched pairs, of request tie rank plus mentor tie
    rank. Each group's flow uses its lowest-ranked requests.
    """
    if not edges:
        return []
    for edge in edges:
        if edge.score <= 0:
            raise ValueError(f"edge {edge}: score must be positive")

    used_groups = sorted({edge.group for edge in edges})
    used_mentors = sorted({edge.mentor for edge in edges})
    source, sink = 0, 1
    group_node = {group: 2 + position for position, group in enumerate(used_groups)}
    mentor_node = {
        mentor: 2 + len(used_groups) + position for position, mentor in enumerate(used_mentors)
    }

    request_count = sum(len(group_request_ranks[group]) for group in used_groups)
    place_count = sum(mentor_free_places[mentor] for mentor in used_mentors)
    # A pair's tie rank is below `rank_bound`, so the tie ranks of a whole assignment
    # sum to less than `tie_scale`. One score point is worth `tie_scale`, so no tie
    # rank can change which totals of score are optimal.
    rank_bound = (
        max(rank for group in used_groups for rank in group_request_ranks[group])
        + len(mentor_free_places)
        + 1
    )
    tie_scale = min(request_count, place_count) * rank_bound + 1

    tails: list[int] = []
    heads: list[int] = []
    capacities: list[int] = []
    costs: list[int] = []

    # one unit arc per request: a group's flow takes its cheapest, lowest-ranked arcs
    for group in used_groups:
        ranks = group_request_ranks[group]
        tails.extend([source] * len(ranks))
        heads.extend([group_node[group]] * len(ranks))
        capacities.extend([1] * len(ranks))
        costs.extend(ranks)

    first_edge_arc = len(tails)
    for edge in edges:
        tails.append(group_node[edge.group])
        heads.append(mentor_node[edge.mentor])
        capacities.append(
            min(len(group_request_ranks[edge.group]), mentor_free_places[edge.mentor])
        )
        costs.append(-edge.score * tie_scale + edge.mentor)

    for mentor in used_mentors:
        tails.append(mentor_node[mentor])
        heads.append(sink)
        capacities.append(mentor_free_places[mentor])
        costs.append(0)

    if not most_matches:
        # an arc around the mentors, so that a request may stay unmatched at no cost
        tails.append(source)
        heads.append(sink)
        capacities.append(request_count)
        costs.append(0)

    solver = min_cost_flow.SimpleMinCostFlow()
    arcs = solver.add_arcs_with_capacity_and_unit_cost(
        numpy.array(tails, dtype=numpy.int32),
        numpy.array(heads, dtype=numpy.int32),
        numpy.array(capacities, dtype=numpy.int64),
        numpy.array(costs, dtype=numpy.int64),
    )
    solver.set_node_supply(source, request_count)
    solver.set_node_supply(sink, -request_count)
    status = solver.solve_max_flow_with_min_cost() if most_matches else solver.solve()
    if status != solver.OPTIMAL:
        raise FlowError(
            f"min-cost flow over {len(used_groups)} groups, {len(used_mentors)} mentors and "
            f"{len(edges)} edges failed with status {status.name}"
        )

    flows: list[int] = solver.flows(arcs[first_edge_arc : first_edge_arc + len(edges)]).tolist()
    return flows
