import pytest
from pydantic import ValidationError

from storage.schemas import Entity, Triple
from storage.store import read_rows, read_table
from tasks.synthesis.two_hop import SynthesisConfig, load_tasks, synthesize


def test_tasks_carry_gold_evidence_that_states_each_hop(tasks_ref, world_ref):
    docs = {d["id"]: d["text"] for d in read_table(world_ref).to_pylist()}
    tasks = load_tasks(tasks_ref)
    assert len(tasks) == 12
    for task in tasks:
        assert len(task.hops) == 2
        assert task.hops[0].object == task.hops[1].subject  # a real chain through a bridge entity
        assert task.answer == task.hops[1].object_name
        for hop in task.hops:
            assert hop.subject_name in docs[hop.doc_id] and hop.object_name in docs[hop.doc_id]
        assert task.answer not in task.question


def test_eval_tasks_are_held_out_by_starting_entity(tasks_ref):
    train, held_out = load_tasks(tasks_ref, "train"), load_tasks(tasks_ref, "eval")
    assert len(train) == 8 and len(held_out) == 4
    assert not {t.hops[0].subject for t in train} & {t.hops[0].subject for t in held_out}


def test_asking_for_more_tasks_than_the_world_yields_is_a_clear_error(world_ref):
    entities, triples = read_rows(world_ref, Entity, "entities"), read_rows(world_ref, Triple, "triples")
    with pytest.raises(ValueError, match="grow the world"):
        synthesize(entities, triples, SynthesisConfig(train_tasks=100_000, eval_tasks=10))


def test_unknown_template_is_rejected():
    with pytest.raises(ValidationError, match="unknown templates"):
        SynthesisConfig(templates=["nope"])


def test_spread_facts_control_how_many_documents_a_task_needs():
    from tasks.corpus.world import WorldConfig, generate_world

    world = generate_world(WorldConfig(spread=0.5, distractors=0.3))
    docs = {d.id: d.text for d in world.documents}
    one_page = synthesize(
        world.entities, world.triples, SynthesisConfig(train_tasks=8, eval_tasks=4, max_msd=1)
    )
    two_pages = synthesize(
        world.entities, world.triples, SynthesisConfig(train_tasks=8, eval_tasks=4, min_msd=2)
    )
    assert {t.msd for t in one_page} == {1} and {t.msd for t in two_pages} == {2}
    for task in one_page + two_pages:
        assert len({h.doc_id for h in task.hops}) == task.msd
        for hop in task.hops:  # the gold page states the fact, wherever spread put it
            assert hop.subject_name in docs[hop.doc_id] and hop.object_name in docs[hop.doc_id]
    # Some facts now live on the object's page, not the subject's.
    assert any(t.doc_ids != [f"doc-{t.subject}"] for t in world.triples)


def test_distractors_are_near_miss_twins_with_their_own_facts():
    from tasks.corpus.world import WorldConfig, generate_world

    world = generate_world(WorldConfig(distractors=0.5))
    names = {e.id: e.name for e in world.entities}
    twins = [(names[i[:-1]], names[i]) for i in names if i.endswith("x")]
    assert len(twins) > 50
    for original, twin in twins:
        assert original != twin and len(original) == len(twin)
        assert sum(a != b for a, b in zip(original, twin, strict=True)) == 1
    assert len(set(names.values())) == len(names)  # every name still unique
