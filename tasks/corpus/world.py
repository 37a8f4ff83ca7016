"""The embedded synthetic world: a seeded, typed knowledge graph rendered into documents.

No language model has seen these entities, so an agent has to search to answer questions about
them: recall cannot stand in for retrieval. Every fact is a triple that names the document stating
it, which is what lets task synthesis record gold evidence and the reference judge rate steps.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Document, Entity, Triple
from storage.store import write_table
from tasks.corpus.names import NameGenerator
from tasks.stage_spec import Inputs, Stage

# relation -> (subject type, object type, sentence template, the words a searcher would use for it)
RELATIONS: dict[str, tuple[str, str, str, str]] = {
    "located_in": ("city", "country", "{s} is a city in {o}.", "city in"),
    "capital_of": ("city", "country", "{s} serves as the capital of {o}.", "capital of"),
    "born_in": ("person", "city", "{s} was born in {o}.", "born in"),
    "died_in": ("person", "city", "{s} died in {o}.", "died in"),
    "works_for": ("person", "organisation", "{s} works for {o}.", "works for"),
    "educated_at": ("person", "organisation", "{s} studied at {o}.", "studied at"),
    "spouse_of": ("person", "person", "{s} is married to {o}.", "married to"),
    "mentor_of": ("person", "person", "{s} was the mentor of {o}.", "mentor of"),
    "founded_by": ("organisation", "person", "{s} was founded by {o}.", "founded by"),
    "headquartered_in": ("organisation", "city", "{s} has its headquarters in {o}.", "headquarters in"),
    "subsidiary_of": ("organisation", "organisation", "{s} is a subsidiary of {o}.", "subsidiary of"),
    "created_by": ("work", "person", "{s} was written by {o}.", "written by"),
    "published_by": ("work", "organisation", "{s} was published by {o}.", "published by"),
    "held_in": ("event", "city", "{s} took place in {o}.", "took place in"),
    "organised_by": ("event", "organisation", "{s} was organised by {o}.", "organised by"),
    "set_in": ("work", "city", "{s} is set in {o}.", "set in"),
}

# attribute -> (entity type, sentence template, the words a searcher would use for it)
ATTRIBUTES: dict[str, tuple[str, str, str]] = {
    "birth_date": ("person", "{s} was born on {v}.", "born on"),
    "founded_year": ("organisation", "{s} was established in {v}.", "established in"),
    "published_year": ("work", "{s} first appeared in {v}.", "first appeared in"),
    "population": ("city", "{s} has a population of about {v}.", "population"),
    "year": ("event", "{s} was held in {v}.", "held in"),
}
ATTRIBUTE_SENTENCES = {key: sentence for key, (_, sentence, _) in ATTRIBUTES.items()}


ENTITY_COUNTS = ("countries", "cities", "people", "organisations", "works", "events")


class WorldConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of the world; the same seed always gives the same world.")
    countries: int = Field(6, ge=1, le=100_000)
    cities: int = Field(24, ge=2, le=200_000)
    people: int = Field(120, ge=4, le=2_000_000)
    organisations: int = Field(40, ge=2, le=500_000)
    works: int = Field(60, ge=0, le=2_000_000)
    events: int = Field(20, ge=0, le=500_000)
    spread: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of facts stated on the related entity's page instead of the subject's own: "
        "more spread means more documents per task (MSD) and pages that must be read for others' facts.",
    )
    distractors: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Near-miss twins per entity: an entity whose name is one letter off, with its own "
        "different facts, so that a careless match of a name finds the wrong page.",
    )
    mirror: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of facts stated on both entities' pages (a city page naming who was born "
        "there): facts then have several sources, and a task's MSD is a true set cover.",
    )
    convergence: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Share of relations that re-converge: a person born in the city where their "
        "employer is headquartered, a work published by its author's employer and set in the "
        "author's birthplace, an event held where its organiser is based. These close cycles in the "
        "graph, which questions of treewidth 2 and 3 are built on.",
    )

    @classmethod
    def for_documents(cls, documents: int, seed: int = 0) -> WorldConfig:
        """A world of about ``documents`` pages with the default's mix of entity types."""
        default = cls()
        mix = {name: getattr(default, name) for name in ENTITY_COUNTS}
        scale = documents / sum(mix.values())
        return cls(seed=seed, **{name: max(2, round(count * scale)) for name, count in mix.items()})


class World(BaseModel):
    entities: list[Entity]
    triples: list[Triple]
    documents: list[Document]


def generate_world(config: WorldConfig) -> World:
    rng = random.Random(config.seed)
    names = NameGenerator(rng)
    entities: dict[str, Entity] = {}

    def add(kind: str, count: int, make_name) -> list[str]:
        ids = []
        for i in range(count):
            eid = f"{kind[:3]}{i:06d}"
            entities[eid] = Entity(id=eid, type=kind, name=make_name())
            ids.append(eid)
            if config.distractors and rng.random() < config.distractors:
                twin = names.near_miss(entities[eid].name)
                if twin is not None:
                    entities[f"{eid}x"] = Entity(id=f"{eid}x", type=kind, name=twin)
                    ids.append(f"{eid}x")
        return ids

    countries = add(
        "country", config.countries, lambda: names.word((2, 3)) + rng.choice(["ia", "land", "ora"])
    )
    cities = add("city", config.cities, lambda: names.word((2, 3)))
    people = add("person", config.people, lambda: f"{names.word((2, 2))} {names.word((2, 3))}")
    orgs = add(
        "organisation",
        config.organisations,
        lambda: (
            f"{names.word((2, 3))} {rng.choice(['Institute', 'Group', 'Foundation', 'Works', 'Press', 'Society'])}"
        ),
    )
    works = add(
        "work",
        config.works,
        lambda: (
            f"The {names.word((2, 3))} {rng.choice(['Chronicle', 'Atlas', 'Songs', 'Letters', 'Treatise'])}"
        ),
    )
    events = add(
        "event",
        config.events,
        lambda: f"{names.word((2, 3))} {rng.choice(['Summit', 'Festival', 'Congress', 'Games'])}",
    )

    facts: list[tuple[str, str, str]] = []
    for city in cities:
        facts.append((city, "located_in", rng.choice(countries)))
    cities_of: dict[str, list[str]] = defaultdict(list)
    for city, _, country in facts:
        cities_of[country].append(city)
    for country in countries:
        if cities_of[country]:
            facts.append((rng.choice(cities_of[country]), "capital_of", country))
    headquarters = {org: rng.choice(cities) for org in orgs}
    founders = {org: rng.choice(people) for org in orgs}
    birthplace, employer = {}, {}
    for person in people:
        if orgs:
            employer[person] = rng.choice(orgs)
        local = person in employer and rng.random() < config.convergence
        birthplace[person] = headquarters[employer[person]] if local else rng.choice(cities)
        facts.append((person, "born_in", birthplace[person]))
        if rng.random() < 0.4:
            facts.append((person, "died_in", rng.choice(cities)))
        if orgs:
            facts.append((person, "works_for", employer[person]))
            if rng.random() < 0.6:
                facts.append((person, "educated_at", rng.choice(orgs)))
    shuffled = people[:]
    rng.shuffle(shuffled)
    for a, b in zip(shuffled[0::2], shuffled[1::2], strict=False):
        if rng.random() < 0.5:
            facts.append((a, "spouse_of", b))
            facts.append((b, "spouse_of", a))
    for person in people:
        if rng.random() < 0.3:
            mentee = rng.choice(people)
            if mentee != person:
                facts.append((person, "mentor_of", mentee))
    for org in orgs:
        facts.append((org, "founded_by", founders[org]))
        facts.append((org, "headquartered_in", headquarters[org]))
        if rng.random() < 0.25:
            parent = rng.choice(orgs)
            if parent != org:
                facts.append((org, "subsidiary_of", parent))
    for work in works:
        author = rng.choice(people)
        local = author in employer and rng.random() < config.convergence
        facts.append((work, "created_by", author))
        facts.append((work, "published_by", employer[author] if local else rng.choice(orgs)))
        facts.append((work, "set_in", birthplace[author] if local else rng.choice(cities)))
    for event in events:
        organiser = rng.choice(orgs)
        local = rng.random() < config.convergence
        facts.append((event, "held_in", headquarters[organiser] if local else rng.choice(cities)))
        facts.append((event, "organised_by", organiser))

    # Dates and numbers for tool questions; an organisation is founded when its founder is 20-70.
    born = {}
    for entity in entities.values():
        if entity.type == "person":
            year = rng.randint(1850, 1990)
            born[entity.id] = year
            day = f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            entity.attributes["birth_date"] = f"{year}-{day}"
    for entity in entities.values():
        if entity.type == "organisation":
            founder = founders.get(entity.id)
            year = born[founder] + rng.randint(20, 70) if founder else rng.randint(1700, 2015)
            entity.attributes["founded_year"] = str(year)
        elif entity.type == "work":
            entity.attributes["published_year"] = str(rng.randint(1800, 2020))
        elif entity.type == "city":
            entity.attributes["population"] = f"{rng.randint(5, 900) * 1000:,}"
        elif entity.type == "event":
            entity.attributes["year"] = str(rng.randint(1900, 2024))

    # Where each fact is stated: its subject's page, or (spread) the page of the entity it points to;
    # (mirror) on both.
    stated_on = []
    for subject, _, obj in facts:
        page = obj if rng.random() < config.spread else subject
        other = subject if page == obj else obj
        stated_on.append([page, other] if rng.random() < config.mirror else [page])
    documents, triples = render_documents(entities, facts, stated_on)
    return World(entities=list(entities.values()), triples=triples, documents=documents)


def doc_id_for(entity_id: str) -> str:
    return f"doc-{entity_id}"


def render_documents(
    entities: dict[str, Entity], facts: list[tuple[str, str, str]], stated_on: list[list[str]]
) -> tuple[list[Document], list[Triple]]:
    """One encyclopedia-style page per entity: its attributes and the facts stated on it."""
    sentences: dict[str, list[str]] = defaultdict(list)
    triples = []
    for (subject, relation, obj), pages in zip(facts, stated_on, strict=True):
        sentence = RELATIONS[relation][2].format(s=entities[subject].name, o=entities[obj].name)
        for page in pages:
            sentences[page].append(sentence)
        doc_ids = [doc_id_for(page) for page in pages]
        triples.append(Triple(subject=subject, relation=relation, object=obj, doc_ids=doc_ids))
    documents = []
    for entity in entities.values():
        article = "an" if entity.type[0] in "aeiou" else "a"
        intro = f"{entity.name} is {article} {entity.type}."
        attrs = [ATTRIBUTE_SENTENCES[k].format(s=entity.name, v=v) for k, v in entity.attributes.items()]
        text = " ".join([intro, *attrs, *sentences[entity.id]])
        documents.append(
            Document(id=doc_id_for(entity.id), title=entity.name, text=text, entity_id=entity.id)
        )
    return documents, triples


def produce_world(work: Path, config: WorldConfig, inputs: Inputs, store: ArtifactStore) -> None:
    world = generate_world(config)
    write_table(work, world.documents)
    write_table(work, world.entities, name="entities")
    write_table(work, world.triples, name="triples")


STAGE = Stage(name="world", kind="world", produce=produce_world, config_model=WorldConfig)
