"""A grown training pool: new training tasks for the rounds, the held-out split untouched."""

from pathlib import Path

import pytest

from flows.config import PipelineConfig
from storage.schemas import Entity, Triple
from storage.store import read_rows
from tasks.agent.environment import ToolConfig
from tasks.agent.oracle import oracle_trajectory
from tasks.stage import execute_stage
from tasks.synthesis.evidence import load_tasks
from tasks.synthesis.pool import PoolExtensionConfig, extend_pool
from tasks.synthesis.stage import SynthesisConfig

TWO_BUCKETS = {"h2-k1-m2": 0.5, "h3-k1-m3": 0.5}
CORPUS = Path(__file__).parent / "data" / "saltreach_corpus.jsonl"


@pytest.fixture(scope="module")
def base_ref(shared_store, world_ref, index_ref):
    config = SynthesisConfig(train_tasks=8, eval_tasks=4, mix=TWO_BUCKETS)
    return execute_stage("synthesize", shared_store, config, {"world": world_ref, "index": index_ref})


def test_a_grown_pool_adds_verified_training_tasks_that_share_nothing_with_the_held_out_split(
    shared_store, world_ref, index_ref, base_ref, tool
):
    inputs = {"world": world_ref, "index": index_ref, "tasks": base_ref}
    grown = execute_stage("extend-pool", shared_store, PoolExtensionConfig(tasks=6), inputs)
    base = load_tasks(base_ref)
    tasks = load_tasks(grown)
    assert tasks[: len(base)] == base  # the original tasks, both splits, as they were
    added = tasks[len(base) :]
    assert len(added) == 6 and {t.split for t in added} == {"train"}
    assert sorted(t.bucket for t in added) == ["h2-k1-m2"] * 3 + ["h3-k1-m3"] * 3
    assert len({t.id for t in tasks}) == len(tasks)

    held_out = [t for t in base if t.split == "eval"]
    entities = {e for t in held_out for e in (t.root, t.hops[0].subject, *t.named)}
    answers = {t.answer_entity for t in held_out if t.answer_entity}
    facts = {(h.subject, h.relation, h.object) for t in held_out for h in t.hops}
    for task in added:
        assert not {task.root, task.hops[0].subject, *task.named} & entities
        assert task.answer_entity not in answers
        assert not {(h.subject, h.relation, h.object) for h in task.hops} & facts
        # through the same cascade as the synthesis: the oracle solves each through the real tools
        assert oracle_trajectory(task, tool, ToolConfig(top_k=2))[1]


def test_a_pool_grown_beyond_what_the_world_holds_names_the_buckets_short(world_ref):
    entities, triples = read_rows(world_ref, Entity, "entities"), read_rows(world_ref, Triple, "triples")
    config = SynthesisConfig(train_tasks=8, eval_tasks=4, mix=TWO_BUCKETS)
    with pytest.raises(ValueError, match=r"too few tasks left .*h2-k1-m2: \d+/50000"):
        extend_pool(entities, triples, config, [], 100_000)


def test_growing_the_pool_is_checked_before_any_work():
    with pytest.raises(ValueError, match="Grow the world"):
        PipelineConfig.model_validate({"pool": {"extra_tasks": 500_000}})
    with pytest.raises(ValueError, match="with a corpus, ask for more synthesis.train_tasks"):
        PipelineConfig.model_validate({"corpus": str(CORPUS), "pool": {"extra_tasks": 8}})
    # every original task demonstrated: the rounds sample only the grown pool, which is allowed
    every = {"collect": {"skip_demonstrated": True}, "cold_start": {"tasks": 64}}
    with pytest.raises(ValueError, match="leaves the rounds no task"):
        PipelineConfig.model_validate(every)
    PipelineConfig.model_validate({**every, "pool": {"extra_tasks": 16}})


def test_rounds_collect_and_select_on_the_grown_pool_and_are_scored_on_the_original_tasks(monkeypatch):
    """The task set gains the pool beside its tasks; the rounds (and their oracle fallback) sample,
    judge and select on the pool, the cold start's demonstrations and every evaluation read the tasks."""
    import flows.recipe as recipe

    def run(stage, config, inputs, label=""):
        run.calls.append((stage, config, inputs))
        return f"{stage} artifact"

    run.calls, run.in_process = [], True
    config = PipelineConfig.model_validate(
        {"rounds": 1, "pool": {"extra_tasks": 16}, "select": {"oracle_fallback": True}}
    )
    task_set = recipe.build_task_set(run, config)
    extend = [c for c in run.calls if c[0] == "extend-pool"]
    assert extend == [
        (
            "extend-pool",
            PoolExtensionConfig(tasks=16),
            {"world": "world artifact", "index": "index artifact", "tasks": "synthesize artifact"},
        )
    ]
    assert task_set.tasks == "synthesize artifact" and task_set.pool == "extend-pool artifact"

    seen = []
    monkeypatch.setattr(
        recipe, "collect", lambda run, config, policy, ts, *a: seen.append(("collect", ts.tasks))
    )
    monkeypatch.setattr(
        recipe,
        "annotate_and_select",
        lambda run, config, ts, *a, **k: seen.append(("select", ts.tasks)) or ("a", "s"),
    )
    monkeypatch.setattr(
        recipe, "evaluate", lambda run, config, policy, ts, label: seen.append(("evaluate", ts.tasks))
    )
    monkeypatch.setattr(
        recipe, "oracle_demonstrations", lambda run, config, ts: seen.append(("oracle", ts.tasks))
    )
    recipe.run_rounds(run, config, "cold start", task_set, ["demos"])
    assert seen == [
        ("oracle", "extend-pool artifact"),
        ("collect", "extend-pool artifact"),
        ("select", "extend-pool artifact"),
        ("evaluate", "synthesize artifact"),
    ]
    seen.clear()
    recipe.demonstrations(run, config, "base", task_set)
    assert seen == [("oracle", "synthesize artifact")]


def test_the_capacity_check_counts_a_grown_pool_as_the_pool_stage_shares_it_out():
    """The pool stage shares its tasks out by the mix on their own, after the synthesis's: one
    training task and one added task both go to the first bucket, so it needs three candidates
    with its held-out one, where sharing two training tasks at once would ask two of each bucket."""
    from tasks.synthesis.stage import capacity_problem

    config = SynthesisConfig(train_tasks=1, eval_tasks=2, mix=TWO_BUCKETS)
    two_each = {"h2-k1-m2": [None, None], "h3-k1-m3": [None, None]}
    assert capacity_problem(two_each, config) is None
    problem = capacity_problem(two_each, config, extra_train=1)
    assert problem is not None and "h2-k1-m2: needs 3" in problem and "h3-k1-m3: needs" not in problem
    assert capacity_problem({"h2-k1-m2": [None] * 3, "h3-k1-m3": [None]}, config, extra_train=1) is None
