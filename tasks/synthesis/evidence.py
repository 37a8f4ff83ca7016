"""A task's gold evidence as the agent meets it: the query that finds each hop, and whether it does.

The oracle replays these queries, the reference critic suggests them, and synthesis keeps a task
only if every hop's gold document comes back for its query within the search tool's top k. A task
whose evidence cannot be retrieved teaches nothing honest: its demonstration would have to open a
document id it never saw, which teaches the model to invent ids.

Queries are planned from what a solver knows at each point: a hop whose subject is already known
is searched by the subject's name and the relation's words ("Dovra Press founded by"); an entity
the question only describes is searched by everything the question says about it ("established in
1871 headquarters in Dovra"), never by a name the solver has not read yet.
"""

from __future__ import annotations

import logging

from storage.schemas import Hop, Task
from storage.store import read_rows
from tasks.corpus.world import ATTRIBUTES, RELATIONS
from tasks.synthesis.graph import Fact, KnowledgeGraph, Subgraph, relation_words


def fact_sentence(hop: Hop) -> str:
    if hop.evidence:  # read from a page: the page's own words
        return hop.evidence
    if hop.relation in ATTRIBUTES:
        return ATTRIBUTES[hop.relation][1].format(s=hop.subject_name, v=hop.object_name)
    return RELATIONS[hop.relation][2].format(s=hop.subject_name, o=hop.object_name)


def hop_query(hop: Hop) -> str:
    return hop.query or f"{hop.subject_name} {relation_words(hop.relation)}"


def gold_turns(task: Task) -> int:
    """Turns the gold path takes: one search per distinct consecutive hop query (as the oracle walks
    it), a ``calculate`` for tool tasks, and the answer. A task without hops (a user's question) takes
    at least its answer."""
    searches = sum(i == 0 or hop_query(hop) != hop_query(task.hops[i - 1]) for i, hop in enumerate(task.hops))
    return searches + bool(task.calculation) + 1


def out_of_reach(tasks: list[Task], max_turns: int) -> list[Task]:
    """The tasks whose gold path takes more turns than ``max_turns``, with a warning when there are any:
    a score capped by the turn budget should not pass for the policy's limit."""
    far = [t for t in tasks if gold_turns(t) > max_turns]
    if far:
        logging.getLogger(__name__).warning(
            "%d of %d tasks need more than max_turns=%d turns (up to %d); raise agent.max_turns to reach them",
            len(far),
            len(tasks),
            max_turns,
            max(gold_turns(t) for t in far),
        )
    return far


def plan_hops(graph: KnowledgeGraph, sub: Subgraph) -> list[Hop]:
    """The subgraph's facts in an order a solver can follow, each with the query that finds it.

    The document of each hop is its first source here; retrieval assigns the one search returns.
    """
    known = set(sub.named)
    lookups = set(sub.lookups)
    remaining = list(sub.facts)
    hops: list[Hop] = []
    while remaining:
        fact = next((f for f in remaining if f.subject in known), None)
        if fact is not None:
            remaining.remove(fact)
            hops.append(_hop(graph, fact, f"{graph.name(fact.subject)} {relation_words(fact.relation)}"))
            known.add(fact.object)
            continue

        def pins(node: str) -> list[Fact]:
            return [
                f
                for f in remaining
                if f.subject == node and (f.object in known or (f.is_attribute and f not in lookups))
            ]

        order = list(dict.fromkeys(f.subject for f in remaining))
        node = max(order, key=lambda n: (len(pins(n)), -order.index(n)))
        group = pins(node)
        if not group:
            raise ValueError(f"{sub.pattern}: no fact leads from what the question gives to {node}")
        query = " ".join(f"{relation_words(f.relation)} {graph.name(f.object)}" for f in group)
        for f in group:
            remaining.remove(f)
            hops.append(_hop(graph, f, query))
        known.add(node)
    return hops


def _hop(graph: KnowledgeGraph, fact: Fact, query: str) -> Hop:
    return Hop(
        subject=fact.subject,
        subject_name=graph.name(fact.subject),
        relation=fact.relation,
        object=fact.value if fact.is_attribute else fact.object,
        object_name=graph.name(fact.object),
        doc_id=graph.sources[fact][0],
        query=query,
    )


def unretrievable_hops(tasks: list[Task], search, top_k: int) -> dict[str, int]:
    """For each task with a hop whose gold document is not in its query's top k: the first such hop.

    ``search`` is a search tool's batched ``search(queries, k)``; one call covers every hop.
    """
    queries = sorted({hop_query(h) for t in tasks for h in t.hops})
    found = {
        q: {hit.doc_id for hit in hits} for q, hits in zip(queries, search(queries, k=top_k), strict=True)
    }
    missing = {}
    for task in tasks:
        for index, hop in enumerate(task.hops):
            if hop.doc_id not in found[hop_query(hop)]:
                missing[task.id] = index
                break
    return missing


def load_tasks(ref, split: str | None = None) -> list[Task]:
    tasks = read_rows(ref, Task)
    return [t for t in tasks if split is None or t.split == split]
