"""REDSearcher's two difficulty axes, and the buckets a target mix is written in.

- **Treewidth k** of the question's reasoning graph (nodes: the entities and literal values of its
  facts; edges: the facts). Chains and trees have k=1; a cycle where paths re-converge (a person
  born in the city where their employer is headquartered) has k=2; a K4 of mutually constrained
  entities has k=3. Exact for graphs up to ``EXACT_NODES`` nodes (networkx's min-fill-in bound where
  it is tight, else a dynamic programme over vertex subsets); above that, networkx's min-fill-in
  heuristic, an upper bound, and the task says so.
- **Minimum source dispersion (MSD)**: the fewest documents that together state every fact the
  question needs. Exact set cover while the documents involved are few (``EXACT_DOCUMENTS``), else
  the greedy cover, an upper bound, and the task says so.

A bucket is (hops, k, MSD), written ``h3-k2-m2``: hops counts the facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import networkx as nx

EXACT_NODES = 16
EXACT_DOCUMENTS = 20
MAX_HOPS = 8


# --- treewidth -------------------------------------------------------------------------------------


def treewidth(edges: list[tuple[str, str]]) -> tuple[int, bool]:
    """(k, exact) for the undirected graph of ``edges``; parallel edges and directions are ignored."""
    order: dict[str, int] = {}
    canonical = set()
    for a, b in edges:
        if a == b:
            continue
        i, j = order.setdefault(a, len(order)), order.setdefault(b, len(order))
        canonical.add((min(i, j), max(i, j)))
    return _treewidth(len(order), frozenset(canonical))


@lru_cache(maxsize=4096)
def _treewidth(n: int, edges: frozenset[tuple[int, int]]) -> tuple[int, bool]:
    if not edges:
        return 0, True
    graph = nx.Graph(edges)
    if nx.is_forest(graph):
        return 1, True
    upper, _ = nx.algorithms.approximation.treewidth_min_fill_in(graph)
    if upper <= 2:  # not a forest, so at least 2: the bound is exact
        return 2, True
    if n > EXACT_NODES:
        return upper, False
    return _exact_treewidth(n, edges), True


def _exact_treewidth(n: int, edges: frozenset[tuple[int, int]]) -> int:
    """Treewidth by the O*(2^n) recurrence over elimination prefixes (Bodlaender et al., 2006):
    TW(S) = min over v in S of max(TW(S - v), |Q(S - v, v)|), where Q(S, v) are the vertices outside
    S + v reachable from v through S."""
    neighbours = [0] * n
    for a, b in edges:
        neighbours[a] |= 1 << b
        neighbours[b] |= 1 << a
    full = (1 << n) - 1

    def q_size(inside: int, v: int) -> int:
        seen, frontier, outside = 1 << v, 1 << v, 0
        while frontier:
            bit = frontier & -frontier
            frontier ^= bit
            u = bit.bit_length() - 1
            new = neighbours[u] & ~seen
            seen |= new
            outside |= new & ~inside
            frontier |= new & inside
        return bin(outside & ~(1 << v)).count("1")

    best = {0: -1}
    for size in range(1, n + 1):
        for members in combinations(range(n), size):
            subset = sum(1 << m for m in members)
            best[subset] = min(max(best[subset & ~(1 << v)], q_size(subset & ~(1 << v), v)) for v in members)
    return best[full]


# --- minimum source dispersion ---------------------------------------------------------------------


def min_source_dispersion(sources: list[list[str]]) -> tuple[int, bool, list[str]]:
    """(MSD, exact, a cover): the fewest documents that together state every fact.

    ``sources`` holds, per fact, the documents stating it.
    """
    if not sources:
        return 0, True, []
    if any(not docs for docs in sources):
        raise ValueError("a fact that no document states cannot be covered")
    # A fact with one source forces that document; cover the rest.
    forced = {docs[0] for docs in sources if len(set(docs)) == 1}
    rest = [set(docs) for docs in sources if not forced & set(docs)]
    candidates = sorted(set().union(*rest)) if rest else []
    if not rest:
        return len(forced), True, sorted(forced)
    if len(candidates) <= EXACT_DOCUMENTS:
        for size in range(1, len(rest) + 1):
            for chosen in combinations(candidates, size):
                picked = set(chosen)
                if all(docs & picked for docs in rest):
                    cover = sorted(forced | picked)
                    return len(cover), True, cover
    cover = set(forced)
    while rest:  # greedy: the document stating most of the still-uncovered facts
        doc = max(candidates, key=lambda d: (sum(d in docs for docs in rest), d))
        cover.add(doc)
        rest = [docs for docs in rest if doc not in docs]
    return len(cover), False, sorted(cover)


# --- buckets ---------------------------------------------------------------------------------------

_BUCKET = re.compile(r"^h(\d+)-k(\d+)-m(\d+)$")


@dataclass(frozen=True, order=True)
class Bucket:
    hops: int
    k: int
    msd: int

    def __str__(self) -> str:
        return f"h{self.hops}-k{self.k}-m{self.msd}"

    @classmethod
    def parse(cls, text: str) -> Bucket:
        match = _BUCKET.match(text.strip())
        if match is None:
            raise ValueError(f"bucket {text!r} is not of the form h<hops>-k<treewidth>-m<msd>, e.g. h3-k2-m2")
        return cls(*(int(g) for g in match.groups()))

    @property
    def hard(self) -> bool:
        """REDSearcher's hard side: re-converging paths, dispersed evidence or long chains."""
        return self.k >= 2 or self.msd >= 3 or self.hops >= 4


def min_hops_for_treewidth(k: int) -> int:
    """The fewest edges a graph of treewidth k has: a k+1 clique."""
    return (k + 1) * k // 2


def structural_problem(bucket: Bucket, shapes: dict[int, set[int]]) -> str | None:
    """Why no task can be in ``bucket``, or None. ``shapes`` maps k to the hop counts the samplers
    produce with that treewidth."""
    if not 2 <= bucket.hops <= MAX_HOPS:
        return f"{bucket}: tasks have 2 to {MAX_HOPS} hops"
    if bucket.msd < 1 or bucket.msd > bucket.hops:
        return f"{bucket}: a task with {bucket.hops} hops has MSD between 1 and {bucket.hops}"
    if bucket.k < 1 or bucket.hops < min_hops_for_treewidth(bucket.k):
        return (
            f"{bucket}: treewidth {bucket.k} needs at least {min_hops_for_treewidth(bucket.k)} hops "
            "(a clique of k+1 entities)"
        )
    if bucket.hops not in shapes.get(bucket.k, set()):
        return f"{bucket}: no question shape has {bucket.hops} hops at treewidth {bucket.k}"
    return None


def describe_shapes(shapes: dict[int, set[int]]) -> str:
    return (
        "; ".join(
            f"k={k}: {', '.join(str(h) for h in sorted(hops))} hops" for k, hops in sorted(shapes.items())
        )
        + " (MSD from 1 to the number of hops)"
    )
