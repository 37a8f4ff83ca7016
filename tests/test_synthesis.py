import networkx as nx
import pytest
from pydantic import ValidationError

from storage.schemas import Document, Entity, Triple
from storage.store import read_rows, read_table
from tasks.agent.environment import ToolConfig
from tasks.agent.oracle import oracle_trajectory
from tasks.corpus.world import WorldConfig, generate_world
from tasks.stage import execute_stage
from tasks.synthesis.difficulty import EXACT_DOCUMENTS, min_source_dispersion, treewidth
from tasks.synthesis.evidence import fact_sentence, gold_turns, load_tasks, out_of_reach
from tasks.synthesis.graph import Fact, KnowledgeGraph, Subgraph
from tasks.synthesis.stage import SynthesisConfig, synthesize, synthesize_report
from tasks.synthesis.verify import check_uniqueness


@pytest.fixture(scope="module")
def mixed_tasks_ref(shared_store, world_ref, index_ref):
    """Tasks of the default mix, through the stage (the cascade's oracle included)."""
    config = SynthesisConfig(train_tasks=8, eval_tasks=4)
    return execute_stage("synthesize", shared_store, config, {"world": world_ref, "index": index_ref})


def test_tasks_carry_gold_evidence_that_states_each_hop(mixed_tasks_ref, world_ref):
    docs = {d["id"]: d["text"] for d in read_table(world_ref).to_pylist()}
    tasks = load_tasks(mixed_tasks_ref)
    assert len(tasks) == 12 and len({t.bucket for t in tasks}) >= 4
    for task in tasks:
        assert task.bucket == f"h{len(task.hops)}-k{task.treewidth}-m{task.msd}"
        assert len({h.doc_id for h in task.hops}) >= task.msd
        for hop in task.hops:
            assert fact_sentence(hop) in docs[hop.doc_id]
        assert task.answer.lower() not in task.question.lower()
        if task.template == "chain":  # a real chain through bridge entities
            assert all(a.object == b.subject for a, b in zip(task.hops, task.hops[1:], strict=False))
            assert task.answer == task.hops[-1].object_name


def test_held_out_tasks_share_no_root_answer_or_starting_entity(mixed_tasks_ref):
    train, held_out = load_tasks(mixed_tasks_ref, "train"), load_tasks(mixed_tasks_ref, "eval")
    assert len(train) == 8 and len(held_out) == 4
    assert not {t.hops[0].subject for t in train} & {t.hops[0].subject for t in held_out}
    assert not {t.root for t in train} & {t.root for t in held_out}
    answers = {t.answer_entity for t in held_out if t.answer_entity}
    assert not {t.answer_entity for t in train} & answers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_splits_ask_for_countries_as_often(seed):
    """Countries are few and no answer may be shared across splits: a split filled first claimed
    them, leaving training a fraction of the country questions evaluation asks (measured with this
    world and mix, seeds 0-2: 10-19% of training tasks against 31-34% of held-out ones; filled in
    step, 27-34% against 32-35%)."""
    mix = {"h2-k1-m2": 0.3, "h3-k1-m2": 0.15, "h3-k1-m3": 0.2, "h3-k2-m2": 0.15, "h4-k1-m2": 0.2}
    world = generate_world(WorldConfig.for_documents(2000, seed=seed))
    config = SynthesisConfig(train_tasks=128, eval_tasks=200, mix=mix, seed=seed)
    tasks = synthesize(world.entities, world.triples, config)
    countries = {e.id for e in world.entities if e.type == "country"}
    share = {
        split: sum(t.hops[-1].object in countries for t in tasks if t.split == split) / n
        for split, n in (("train", 128), ("eval", 200))
    }
    assert share["eval"] > 0.15
    assert abs(share["train"] - share["eval"]) < 0.1, share


def test_asking_for_more_tasks_than_the_world_yields_is_a_clear_error(world_ref):
    entities, triples = read_rows(world_ref, Entity, "entities"), read_rows(world_ref, Triple, "triples")
    with pytest.raises(ValueError, match="Grow the world"):
        synthesize(entities, triples, SynthesisConfig(train_tasks=100_000, eval_tasks=10))


def test_unknown_shape_is_rejected():
    with pytest.raises(ValidationError, match="unknown shapes"):
        SynthesisConfig(shapes=["nope"])


# --- difficulty on graphs with known answers ------------------------------------------------------


def _edges(graph: nx.Graph) -> list[tuple[str, str]]:
    return [(str(a), str(b)) for a, b in graph.edges]


@pytest.mark.parametrize(
    ("graph", "k"),
    [
        (nx.path_graph(9), 1),  # an 8-hop chain
        (nx.star_graph(4), 1),  # a hub with four constraints
        (nx.cycle_graph(4), 2),  # paths that re-converge
        (nx.Graph([(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]), 2),  # a diamond (K4 less one edge)
        (nx.complete_graph(4), 3),  # K4
        (nx.grid_2d_graph(3, 3), 3),
        (nx.complete_graph(5), 4),
        (nx.petersen_graph(), 4),
    ],
)
def test_treewidth_of_graphs_whose_treewidth_is_known(graph, k):
    assert treewidth(_edges(graph)) == (k, True)


def test_msd_is_an_exact_set_cover_where_small_and_a_labelled_bound_beyond():
    # four facts, four pages; pages a and c (or b and d) state them all
    cyclic = [["a", "b"], ["b", "c"], ["c", "d"], ["d", "a"]]
    msd, exact, cover = min_source_dispersion(cyclic)
    assert (msd, exact) == (2, True)
    assert all(set(docs) & set(cover) for docs in cyclic)
    assert min_source_dispersion([["a"], ["a", "b"], ["c"]])[:2] == (2, True)
    # Greedy's classic trap: one page states half of every pair, but two pages state all facts.
    halves = [f"left{i}" for i in range(EXACT_DOCUMENTS)] + [f"right{i}" for i in range(EXACT_DOCUMENTS)]
    facts = [["L", halves[i]] for i in range(EXACT_DOCUMENTS)] + [
        ["R", halves[EXACT_DOCUMENTS + i]] for i in range(EXACT_DOCUMENTS)
    ]
    facts += [["L", "R", "wide"], ["wide", "left0"]]
    msd, exact, _ = min_source_dispersion(facts)
    assert not exact and msd >= 2


# --- the verifier cascade on a hand-built world ---------------------------------------------------


def _world(local_employees: dict[str, list[str]]) -> tuple[list[Entity], list[Triple]]:
    """Organisations with headquarters in their own city; the listed people work for them and were
    born in that city; one more employee of each was born elsewhere."""
    entities = [Entity(id="elsewhere", type="city", name="Elsewhere")]
    triples = []
    for org, people in local_employees.items():
        city = f"{org}-city"
        entities += [
            Entity(id=org, type="organisation", name=f"{org.title()} Press"),
            Entity(id=city, type="city", name=f"{org.title()}ville"),
        ]
        triples.append(Triple(subject=org, relation="headquartered_in", object=city, doc_ids=[f"doc-{org}"]))
        for person in [*people, f"{org}-outsider"]:
            entities.append(Entity(id=person, type="person", name=f"{person.title()} Smith"))
            born = city if person in people else "elsewhere"
            triples += [
                Triple(subject=person, relation="works_for", object=org, doc_ids=[f"doc-{person}"]),
                Triple(subject=person, relation="born_in", object=born, doc_ids=[f"doc-{person}"]),
            ]
    return entities, triples


def test_a_tempting_answer_that_is_not_unique_is_rejected():
    entities, triples = _world({"acme": ["ann", "bob"], "zeta": ["cal"], "omni": ["dee"]})
    graph = KnowledgeGraph(entities, triples)

    def local_employee(person: str, org: str) -> Subgraph:
        city = f"{org}-city"
        facts = [
            Fact(org, "headquartered_in", city),
            Fact(person, "works_for", org),
            Fact(person, "born_in", city),
        ]
        return Subgraph("converge:local-employee", facts, answer=person, root=org, named=[org])

    # Ann works for Acme and was born where Acme is based; so was Bob: "which person ..." has two answers
    assert "not unique" in check_uniqueness(graph, local_employee("ann", "acme"))
    assert "(Bob Smith)" in check_uniqueness(graph, local_employee("ann", "acme"))  # names the rival
    assert check_uniqueness(graph, local_employee("cal", "zeta")) is None

    config = SynthesisConfig(train_tasks=1, eval_tasks=1, mix={"h3-k2-m2": 1}, shapes=["converge"])
    result = synthesize_report(entities, triples, config)
    assert {t.answer_entity for t in result.tasks} == {"cal", "dee"}
    rejected = {(r.verifier, r.answer) for r in result.rejected}
    assert rejected == {("uniqueness", "Ann Smith"), ("uniqueness", "Bob Smith")}
    assert result.rejected_by_stage == {"uniqueness": 2}


def test_a_tool_question_is_answered_only_through_calculate(world_ref, index_ref, tool):
    world_docs = read_rows(world_ref, Document)
    config = SynthesisConfig(train_tasks=1, eval_tasks=1, mix={"h3-k1-m2": 1}, shapes=["tool"])
    tools = ToolConfig(top_k=config.evidence_top_k)
    result = synthesize_report(
        read_rows(world_ref, Entity, "entities"),
        read_rows(world_ref, Triple, "triples"),
        config,
        tool.search,
        solve=lambda t: oracle_trajectory(t, tool, tools)[1],
        documents=world_docs,
    )
    for task in result.tasks:
        assert task.calculation and task.template == "tool:founding-age"
        trajectory, solved = oracle_trajectory(task, tool, tools)
        assert solved and [s.action for s in trajectory.steps][-2:] == ["calculate", "answer"]
        *reading, calculation, answer = trajectory.steps
        assert answer.argument == calculation.observation == task.answer
        # no page the oracle read (nor any page at all) states the number
        assert not any(f" {task.answer} " in f" {s.observation} " for s in reading)
        assert not any(f" {task.answer} " in f" {d.text} " for d in world_docs)
        # a wrong calculation leads the oracle to a wrong answer: it does not copy the stored one
        wrong = task.model_copy(update={"calculation": task.calculation.replace(" - ", " + ")})
        assert oracle_trajectory(wrong, tool, tools) == (None, False)


def test_a_described_root_is_never_named_nor_searched_by_name(world_ref, index_ref, tool):
    entities = read_rows(world_ref, Entity, "entities")
    config = SynthesisConfig(train_tasks=3, eval_tasks=2, mix={"h4-k1-m2": 1}, shapes=["chain"])
    tasks = synthesize_report(entities, read_rows(world_ref, Triple, "triples"), config, tool.search).tasks
    names = {e.id: e.name for e in entities}
    for task in tasks:
        assert task.template == "chain+described"
        assert names[task.root] not in task.question
        assert names[task.root] not in task.hops[0].query  # found from what it is, not its name
        assert task.hops[0].query == task.hops[1].query  # both facts of the description, one search


# --- targets --------------------------------------------------------------------------------------


def test_a_target_mix_is_met_per_split_and_reported(world_ref):
    entities, triples = read_rows(world_ref, Entity, "entities"), read_rows(world_ref, Triple, "triples")
    mix = {"h2-k1-m2": 0.5, "h3-k2-m2": 0.25, "h3-k1-m3": 0.25}
    result = synthesize_report(entities, triples, SynthesisConfig(train_tasks=8, eval_tasks=4, mix=mix))
    for split, size in (("train", 8), ("eval", 4)):
        got = [t.bucket for t in result.tasks if t.split == split]
        assert {b: got.count(b) for b in mix} == {b: round(size * share) for b, share in mix.items()}
    assert {r.bucket: (r.target_share, r.achieved_share) for r in result.report} == {
        b: (share, share) for b, share in mix.items()
    }
    assert all(t.treewidth == 2 for t in result.tasks if t.bucket == "h3-k2-m2")


def test_an_impossible_target_fails_before_anything_is_written(tmp_path, capsys):
    from flows.cli import main

    with pytest.raises(ValidationError, match="MSD between 1 and 2"):
        SynthesisConfig(mix={"h2-k1-m6": 1})
    with pytest.raises(ValidationError, match="treewidth 3 needs at least 6 hops"):
        SynthesisConfig(mix={"h3-k3-m1": 1})
    code = main(["run", "--home", str(tmp_path), "--synthesis.mix", "h2-k1-m2=0.5,h9-k1-m2=0.5"])
    assert code == 2 and "tasks have 2 to 8 hops" in capsys.readouterr().err
    asked = ["--synthesis.train-tasks", "16", "--synthesis.eval-tasks", "12"]
    code = main(["run", "--home", str(tmp_path), "--synthesis.mix", "h6-k3-m3=1", *asked])
    assert code == 2 and "the world holds too few candidates (h6-k3-m3: needs 28" in capsys.readouterr().err
    assert not (tmp_path / "artifacts").exists()


def test_spread_and_mirrored_facts_give_tasks_dispersed_evidence():
    world = generate_world(WorldConfig(spread=0.5, mirror=0.5, distractors=0.3))
    docs = {d.id: d.text for d in world.documents}
    result = synthesize_report(world.entities, world.triples, SynthesisConfig(train_tasks=8, eval_tasks=4))
    for task in result.tasks:
        for hop in task.hops:  # the gold page states the fact, wherever spread put it
            assert fact_sentence(hop) in docs[hop.doc_id]
    # Some facts now live on the object's page, some on both.
    assert any(t.doc_ids != [f"doc-{t.subject}"] for t in world.triples)
    assert any(len(t.doc_ids) == 2 for t in world.triples)


def test_distractors_are_near_miss_twins_with_their_own_facts():
    world = generate_world(WorldConfig(distractors=0.5))
    names = {e.id: e.name for e in world.entities}
    twins = [(names[i[:-1]], names[i]) for i in names if i.endswith("x")]
    assert len(twins) > 50
    for original, twin in twins:
        assert original != twin and len(original) == len(twin)
        assert sum(a != b for a, b in zip(original, twin, strict=True)) == 1
    assert len(set(names.values())) == len(names)  # every name still unique


def test_gold_turns_are_the_turns_the_oracle_takes(mixed_tasks_ref, index_ref, tool):
    tasks = load_tasks(mixed_tasks_ref)
    lengths = {gold_turns(t) for t in tasks}
    assert len(lengths) > 1  # the default mix has paths of different lengths
    for task in tasks:
        trajectory, solved = oracle_trajectory(task, tool, ToolConfig())
        assert solved
        assert len(trajectory.steps) == gold_turns(task), task.bucket
    longest = max(lengths)
    assert out_of_reach(tasks, longest) == []
    assert {t.id for t in out_of_reach(tasks, longest - 1)} == {
        t.id for t in tasks if gold_turns(t) == longest
    }
