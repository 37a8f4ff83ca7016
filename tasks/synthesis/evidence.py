"""A task's gold evidence as the agent meets it: the query that finds each hop, and whether it does.

The oracle replays these queries, the reference critic suggests them, and synthesis keeps a task
only if every hop's gold document comes back for its query within the search tool's top k. A task
whose evidence cannot be retrieved teaches nothing honest: its demonstration would have to open a
document id it never saw, which teaches the model to invent ids.
"""

from __future__ import annotations

from storage.schemas import Hop, Task
from tasks.corpus.world import RELATIONS


def fact_sentence(hop: Hop) -> str:
    return RELATIONS[hop.relation][2].format(s=hop.subject_name, o=hop.object_name)


def hop_query(hop: Hop) -> str:
    return f"{hop.subject_name} {RELATIONS[hop.relation][3]}"


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
