"""One graph, many tasks: connected subgraphs sampled from the world, each with an answer node chosen
by its topological role (REDSearcher's One-Graph-Multi-Task).

Shapes, each a sampler over the whole graph:

- ``chain``: a walk of 2-8 functional relations from a named root; the answer is the deep leaf at
  its end (long-chain backtracking). k=1.
- ``hub``: an entity pinned by 2-3 of its own relations to named entities, and perhaps a date or
  number (multi-constraint verification at a high-degree node). k=1.
- ``converge``: paths that re-converge, from the world's re-converging relations: a person who
  works for O and was born in O's headquarters city; an event O organised in its own city; a work O
  published by one of its employees; a work set in its author's birthplace. k=2.
- ``clique``: a work, its author, its publisher and their shared city, every pair related (K4). k=3.
- ``tool``: questions a calculation answers: how old a founder was at the founding (difference),
  which of two people was born first (date comparison), the combined population of two cities
  (sum). k=1.

Any named root may be *obfuscated*: replaced by a description that pins it down (an attribute and
one relation to another named entity: "the organisation established in 1871 with its headquarters
in Dovra"), which adds those two facts to the task. Uniqueness is not assumed here: the verifier
cascade checks every candidate against the whole graph.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tasks.corpus.world import ATTRIBUTES
from tasks.synthesis.difficulty import MAX_HOPS
from tasks.synthesis.graph import LITERAL, Fact, KnowledgeGraph, Subgraph

SHAPES = ("chain", "hub", "converge", "clique", "tool")

# Relations a chain may follow: at most one object per subject in the world.
CHAIN_RELATIONS = (
    "located_in",
    "capital_of",
    "born_in",
    "died_in",
    "works_for",
    "educated_at",
    "spouse_of",
    "founded_by",
    "headquartered_in",
    "subsidiary_of",
    "created_by",
    "published_by",
    "held_in",
    "organised_by",
    "set_in",
)
HUB_RELATIONS = tuple(r for r in CHAIN_RELATIONS if r != "spouse_of")
ATTRIBUTE_OF = {entity_type: key for key, (entity_type, _, _) in ATTRIBUTES.items()}


def hop_counts(shape: str) -> dict[int, set[int]]:
    """Treewidth -> the hop counts a shape produces (with and without an obfuscated root)."""
    if shape == "chain":
        return {1: set(range(2, MAX_HOPS + 1))}
    if shape == "hub":
        return {1: {2, 3, 4}}
    if shape == "converge":
        return {2: {3, 4, 5, 6}}
    if shape == "clique":
        return {3: {6, 7, 8}}
    return {1: {3, 5, 7}}  # tool: founding age 3 (+2), earlier born 5 (+2), population sum 5 (+2)


def shapes_table(shapes: list[str]) -> dict[int, set[int]]:
    table: dict[int, set[int]] = {}
    for shape in shapes:
        for k, hops in hop_counts(shape).items():
            table.setdefault(k, set()).update(hops)
    return table


def sample_subgraphs(
    graph: KnowledgeGraph, rng: random.Random, shapes: list[str], hops: set[int]
) -> Iterator[Subgraph]:
    """Candidates of every shape in ``shapes`` whose hop count may be in ``hops``."""
    roots = sorted(graph.entities)
    rng.shuffle(roots)
    for shape in shapes:
        sampler = _SAMPLERS[shape]
        for sub in sampler(graph, roots, rng, hops):
            if len(sub.facts) in hops:
                yield sub
            described = obfuscate(graph, sub, rng)
            if described is not None and len(described.facts) in hops:
                yield described


# --- shapes ----------------------------------------------------------------------------------------


def _chains(graph: KnowledgeGraph, roots: list[str], rng: random.Random, hops: set[int]):
    lengths = sorted({h for h in hops} | {h - 2 for h in hops if h - 2 >= 2})
    for root in roots:
        for length in lengths:
            facts, node, visited = [], root, {root}
            for _ in range(length):
                steps = [
                    (r, o)
                    for r in CHAIN_RELATIONS
                    if (o := graph.single(node, r)) is not None and o not in visited
                ]
                if not steps:
                    break
                relation, node = rng.choice(steps)
                visited.add(node)
                facts.append(Fact(facts[-1].object if facts else root, relation, node))
            if len(facts) == length:
                yield Subgraph("chain", facts, answer=node, root=root, named=[root])


def _hubs(graph: KnowledgeGraph, roots: list[str], rng: random.Random, hops: set[int]):
    for answer in roots:
        own = [
            Fact(answer, r, o)
            for r, o in graph.relations_of[answer]
            if r in HUB_RELATIONS and graph.single(answer, r) == o
        ]
        for size in (2, 3):
            if len(own) < size:
                continue
            facts = rng.sample(own, size)
            if len({f.object for f in facts}) < size:
                continue
            extra = graph.attribute(answer, ATTRIBUTE_OF.get(graph.type_of(answer), ""))
            named = [f.object for f in facts]
            yield Subgraph("hub", facts, answer=answer, root=named[0], named=named)
            if extra is not None and size == 3:
                yield Subgraph("hub", [*facts, extra], answer=answer, root=named[0], named=named)


# (answer type, answer -> facts in solving order with the named entity first) for re-converging shapes
def _converging(graph: KnowledgeGraph, answer: str) -> list[tuple[str, list[Fact], str]]:
    kind = graph.type_of(answer)
    found = []
    if kind == "person":
        org, city = graph.single(answer, "works_for"), graph.single(answer, "born_in")
        if org and city and graph.single(org, "headquartered_in") == city:
            facts = [
                Fact(org, "headquartered_in", city),
                Fact(answer, "works_for", org),
                Fact(answer, "born_in", city),
            ]
            found.append(("local-employee", facts, org))
    elif kind == "event":
        org, city = graph.single(answer, "organised_by"), graph.single(answer, "held_in")
        if org and city and graph.single(org, "headquartered_in") == city:
            facts = [
                Fact(org, "headquartered_in", city),
                Fact(answer, "organised_by", org),
                Fact(answer, "held_in", city),
            ]
            found.append(("local-event", facts, org))
    elif kind == "work":
        author, org = graph.single(answer, "created_by"), graph.single(answer, "published_by")
        city = graph.single(answer, "set_in")
        if author and org and graph.single(author, "works_for") == org:
            facts = [
                Fact(answer, "published_by", org),
                Fact(answer, "created_by", author),
                Fact(author, "works_for", org),
            ]
            found.append(("house-author", facts, org))
        if author and city and graph.single(author, "born_in") == city:
            facts = [
                Fact(answer, "created_by", author),
                Fact(author, "born_in", city),
                Fact(answer, "set_in", city),
            ]
            found.append(("home-setting", facts, author))
    return found


def _converge(graph: KnowledgeGraph, roots: list[str], rng: random.Random, hops: set[int]):
    for answer in roots:
        for name, facts, anchor in _converging(graph, answer):
            yield Subgraph(f"converge:{name}", facts, answer=answer, root=anchor, named=[anchor])
            extra = graph.attribute(answer, ATTRIBUTE_OF.get(graph.type_of(answer), ""))
            if extra is not None:
                yield Subgraph(
                    f"converge:{name}", [*facts, extra], answer=answer, root=anchor, named=[anchor]
                )


def _cliques(graph: KnowledgeGraph, roots: list[str], rng: random.Random, hops: set[int]):
    for work in roots:
        if graph.type_of(work) != "work":
            continue
        author, org, city = (graph.single(work, r) for r in ("created_by", "published_by", "set_in"))
        if not (author and org and city):
            continue
        if (
            graph.single(author, "works_for") == org
            and graph.single(author, "born_in") == city
            and graph.single(org, "headquartered_in") == city
        ):
            facts = [
                Fact(org, "headquartered_in", city),
                Fact(work, "published_by", org),
                Fact(work, "set_in", city),
                Fact(work, "created_by", author),
                Fact(author, "works_for", org),
                Fact(author, "born_in", city),
            ]
            yield Subgraph("clique:local-work", facts, answer=work, root=org, named=[org])
            extra = graph.attribute(work, "published_year")
            if extra is not None:
                yield Subgraph("clique:local-work", [*facts, extra], answer=work, root=org, named=[org])


def _tools(graph: KnowledgeGraph, roots: list[str], rng: random.Random, hops: set[int]):
    for root in roots:
        kind = graph.type_of(root)
        if kind == "organisation":
            founder = graph.single(root, "founded_by")
            founded, born = (
                graph.attribute(root, "founded_year"),
                founder and graph.attribute(founder, "birth_date"),
            )
            if founder and founded and born:
                yield Subgraph(
                    "tool:founding-age",
                    [Fact(root, "founded_by", founder), founded, born],
                    answer="",
                    root=root,
                    named=[root],
                    lookups=[founded, born],
                    operation="difference",
                )
        elif kind == "work":
            author, org = graph.single(root, "created_by"), graph.single(root, "published_by")
            founder = org and graph.single(org, "founded_by")
            if author and founder and author != founder:
                a, f = graph.attribute(author, "birth_date"), graph.attribute(founder, "birth_date")
                if a and f and a.value != f.value:
                    facts = [
                        Fact(root, "created_by", author),
                        Fact(root, "published_by", org),
                        Fact(org, "founded_by", founder),
                        a,
                        f,
                    ]
                    earlier = author if a.value < f.value else founder
                    yield Subgraph(
                        "tool:earlier-born",
                        facts,
                        answer=earlier,
                        root=root,
                        named=[root],
                        lookups=[a, f],
                        operation="earlier",
                    )
        elif kind == "event":
            city, org = graph.single(root, "held_in"), graph.single(root, "organised_by")
            base = org and graph.single(org, "headquartered_in")
            if city and base and city != base:
                p1, p2 = graph.attribute(city, "population"), graph.attribute(base, "population")
                if p1 and p2:
                    facts = [
                        Fact(root, "held_in", city),
                        Fact(root, "organised_by", org),
                        Fact(org, "headquartered_in", base),
                        p1,
                        p2,
                    ]
                    yield Subgraph(
                        "tool:population-sum",
                        facts,
                        answer="",
                        root=root,
                        named=[root],
                        lookups=[p1, p2],
                        operation="sum",
                    )


_SAMPLERS = {"chain": _chains, "hub": _hubs, "converge": _converge, "clique": _cliques, "tool": _tools}


# --- obfuscation -----------------------------------------------------------------------------------


def obfuscate(graph: KnowledgeGraph, sub: Subgraph, rng: random.Random) -> Subgraph | None:
    """The same question with its root described instead of named, or None when it cannot be.

    The description is one attribute and one relation of the root to an entity outside the
    subgraph, which is named instead (so a searcher must find the root from what it is, not what it
    is called). Only single-root shapes are obfuscated.
    """
    if sub.named != [sub.root] or sub.root == sub.answer:
        return None
    root = sub.root
    used = set(sub.entities)
    key = ATTRIBUTE_OF.get(graph.type_of(root))
    attribute = graph.attribute(root, key) if key else None
    if attribute is None or attribute in sub.lookups or attribute in sub.facts:
        return None
    relations = [
        Fact(root, r, o)
        for r, o in graph.relations_of[root]
        if r in HUB_RELATIONS and o not in used and graph.single(root, r) == o
    ]
    if not relations:
        return None
    relation = rng.choice(relations)
    description = [attribute, relation]
    return Subgraph(
        sub.pattern + "+described",
        [*description, *sub.facts],
        answer=sub.answer,
        root=root,
        named=[relation.object],
        lookups=sub.lookups,
        operation=sub.operation,
        described={root: description},
    )


def literal(value: str) -> str:
    return LITERAL + value
