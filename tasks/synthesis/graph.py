"""The world as a graph to sample questions from and to check them against.

A reasoning graph (REDSearcher's term) is a small set of facts around one answer: edges between
entities (``works_for``) and attribute edges to a literal value (``founded_year`` 1871). A fact is
*given* when the question states it as a constraint, and *looked up* when the question asks for a
value that a calculation then uses (the founder's birth date in "how old was the founder ...").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from storage.schemas import Entity, Triple
from tasks.corpus.world import ATTRIBUTES, RELATIONS, doc_id_for

LITERAL = "="  # node ids of literal values start with it: "=1871"


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str  # an entity id, or LITERAL + value for an attribute

    @property
    def is_attribute(self) -> bool:
        return self.object.startswith(LITERAL)

    @property
    def value(self) -> str:
        return self.object.removeprefix(LITERAL)


@dataclass
class Subgraph:
    """One sampled question before it is written: its facts, its answer and what the question gives.

    ``answer`` is an entity id, or "" when the answer is computed (``operation``) from looked-up
    values. ``named`` entities appear by name in the question; every other entity is a variable the
    solver has to find. ``lookups`` are attribute facts whose value the question does not give.
    """

    pattern: str
    facts: list[Fact]
    answer: str
    root: str
    named: list[str]
    lookups: list[Fact] = field(default_factory=list)
    operation: str = ""  # "difference", "sum" or "earlier" (tool-augmented questions)
    described: dict[str, list[Fact]] = field(default_factory=dict)  # obfuscated entity -> its facts

    @property
    def nodes(self) -> list[str]:
        seen: dict[str, None] = {}
        for fact in self.facts:
            seen.setdefault(fact.subject)
            seen.setdefault(fact.object)
        return list(seen)

    @property
    def entities(self) -> list[str]:
        return [n for n in self.nodes if not n.startswith(LITERAL)]


class KnowledgeGraph:
    """Indexes over entities and facts: what each entity points to, what points to it, and where
    each fact is stated."""

    def __init__(self, entities: list[Entity], triples: list[Triple]) -> None:
        self.entities = {e.id: e for e in entities}
        self.out: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.into: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.relations_of: dict[str, list[tuple[str, str]]] = defaultdict(list)  # subject -> (rel, obj)
        self.sources: dict[Fact, list[str]] = {}
        self.by_type: dict[str, list[str]] = defaultdict(list)
        self.by_attribute: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.by_name = {e.name: e.id for e in entities}
        for t in triples:
            self.out[(t.subject, t.relation)].append(t.object)
            self.into[(t.object, t.relation)].append(t.subject)
            self.relations_of[t.subject].append((t.relation, t.object))
            self.sources[Fact(t.subject, t.relation, t.object)] = list(t.doc_ids)
        for e in entities:
            self.by_type[e.type].append(e.id)
            for key, value in e.attributes.items():
                if key in ATTRIBUTES:
                    self.by_attribute[(key, value)].append(e.id)
                    self.sources[Fact(e.id, key, LITERAL + value)] = [doc_id_for(e.id)]

    def name(self, node: str) -> str:
        return node.removeprefix(LITERAL) if node.startswith(LITERAL) else self.entities[node].name

    def type_of(self, node: str) -> str:
        return "value" if node.startswith(LITERAL) else self.entities[node].type

    def single(self, subject: str, relation: str) -> str | None:
        """The one object of a functional relation, or None when there are none or several."""
        objects = self.out.get((subject, relation), ())
        return objects[0] if len(objects) == 1 else None

    def attribute(self, entity: str, key: str) -> Fact | None:
        value = self.entities[entity].attributes.get(key)
        return None if value is None else Fact(entity, key, LITERAL + value)

    def holds(self, fact: Fact) -> bool:
        return fact in self.sources


def relation_words(relation: str) -> str:
    """The words a searcher would use for a relation or an attribute."""
    if relation in RELATIONS:
        return RELATIONS[relation][3]
    return ATTRIBUTES[relation][2]
