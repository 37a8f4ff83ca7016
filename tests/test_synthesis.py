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
