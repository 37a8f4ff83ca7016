"""Annotation as a stage: cached shards, a killed run that resumes with only unfinished shards, the
reliability report in the CLI, selection on rewards and refined steps, critique-and-refine collection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from storage import ArtifactStore
from storage.schemas import Annotation, Judgement, Rewards, Trajectory
from storage.store import read_rows
from tasks.agent.loop import AgentConfig, RefineConfig, run_agent
from tasks.agent.oracle import OracleConfig
from tasks.evaluate.summary import EvalConfig
from tasks.judge.annotate import AnnotateConfig, AnnotateShardConfig
from tasks.judge.critic import Critique
from tasks.judge.llm_critic import LLMCritic
from tasks.select.rejection import SelectConfig, refined_example, select
from tasks.stage import execute_stage
from tasks.synthesis.evidence import hop_query
from tests.policies import StatePolicy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def oracle_ref(shared_store, tasks_ref, index_ref):
    return execute_stage(
        "collect-oracle", shared_store, OracleConfig(), {"tasks": tasks_ref, "index": index_ref}
    )


def annotate_in_shards(store, tasks_ref, pool, size):
    config = AnnotateConfig(shard_size=size)
    total = sum(ref.rows for ref in pool)
    shards = [
        execute_stage(
            "annotate-shard",
            store,
            AnnotateShardConfig(**config.model_dump(), shard_index=k),
            {"tasks": tasks_ref, "trajectories": pool},
        )
        for k in range(-(-total // size))
    ]
    return shards, execute_stage("annotate", store, config, {"shards": shards})


def test_sharding_changes_nothing_but_where_the_work_is_cut(shared_store, tasks_ref, oracle_ref, capsys):
    shards, merged = annotate_in_shards(shared_store, tasks_ref, [oracle_ref], 3)
    assert [s.rows for s in shards] == [3, 3, 2] and len({s.id for s in shards}) == 3
    _, whole = annotate_in_shards(shared_store, tasks_ref, [oracle_ref], 100)
    rows = {a.trajectory_id: a for a in read_rows(merged, Annotation)}
    assert rows == {a.trajectory_id: a for a in read_rows(whole, Annotation)} and len(rows) == 8
    # the oracle's path: every gold page found, the answer read off them, nothing wasted
    rewards = read_rows(merged, Rewards, "rewards")
    assert {(r.outcome, r.search_r2, round(r.reagent, 6)) for r in rewards} == {(1.0, 2.0, 1.3)}
    process = [j for j in read_rows(merged, Judgement, "judgements") if j.family == "process"]
    assert len(process) == 8 and {j.score for j in process} == {1.0}

    from flows.cli import main

    assert main(["judges", merged.id, "--home", str(shared_store.root)]) == 0
    out = capsys.readouterr().out
    assert "process:reference" in out and "step:reference" in out and "spearman" in out
    assert main(["judges", "0" * 20, "--home", str(shared_store.root)]) == 2


def test_model_judge_settings_stay_out_of_ids_when_no_model_judges(shared_store, tasks_ref, oracle_ref):
    from tasks.stage import get_stage, stage_artifact_id

    stage, inputs = get_stage("annotate-shard"), {"tasks": tasks_ref, "trajectories": [oracle_ref]}
    plain = stage_artifact_id(stage, AnnotateShardConfig(), inputs)
    assert plain == stage_artifact_id(stage, AnnotateShardConfig(max_reasks=5, granularity="step"), inputs)
    judged = AnnotateShardConfig(reward_model="openai:judge@http://127.0.0.1:9/v1")
    assert stage_artifact_id(stage, judged, inputs) != plain
    assert stage_artifact_id(stage, judged.model_copy(update={"max_reasks": 5}), inputs) != stage_artifact_id(
        stage, judged, inputs
    )
    with pytest.raises(ValidationError):
        AnnotateConfig(reward_model="gpt")


RESUMABLE = """
import json, sys
from flows.config import PipelineConfig
from flows.recipe import annotate, build_task_set, oracle_demonstrations
from flows.stages import local_stage_runner
from tasks.llm.models import BaseModelConfig

home = sys.argv[1]
with local_stage_runner("judge-model", {}, home) as run:
    judge = run("base-model", BaseModelConfig(spec="hf:tiny"), {})
config = PipelineConfig.model_validate({
    "home": home,
    "synthesis": {"train_tasks": 8, "eval_tasks": 2, "mix": {"h2-k1-m2": 1}},
    "annotate": {"shard_size": 1, "reward_model": "hf:" + judge.uri, "max_new_tokens": 16, "max_reasks": 0},
})
with local_stage_runner("annotate-test", config, home) as run:
    task_set = build_task_set(run, config)
    annotate(run, config, task_set, [oracle_demonstrations(run, config, task_set)], "annotate")
print(json.dumps([[e.stage, e.reused] for e in run.events]))
"""


def annotation_shards(store: ArtifactStore) -> dict[str, float]:
    root = store.artifacts / "annotation-shard"
    if not root.exists():
        return {}
    return {p.name: (p / "_meta.json").stat().st_mtime for p in root.iterdir() if (p / "_meta.json").exists()}


@pytest.mark.slow
def test_a_killed_annotation_resumes_with_only_its_unfinished_shards(tmp_path):
    store = ArtifactStore(tmp_path)
    command = [sys.executable, "-c", RESUMABLE, str(tmp_path)]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)}
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True, stdout=out, stderr=out)
    deadline = time.monotonic() + 300
    while len(annotation_shards(store)) < 2:
        assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no annotation shard finished in time"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = annotation_shards(store)
    assert 2 <= len(finished_before) < 8

    rerun = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = annotation_shards(store)
    assert len(after) == 8
    assert {k: after[k] for k in finished_before} == finished_before  # reused as they were
    events = json.loads(rerun.stdout.strip().splitlines()[-1])
    shard_events = [reused for stage, reused in events if " shard " in stage]
    assert len(shard_events) == 8 and sum(shard_events) >= len(finished_before)
    assert sum(not reused for reused in shard_events) == 8 - sum(shard_events)
    merged = store.artifacts / "annotations"
    (annotations,) = list(merged.iterdir())
    assert len(read_rows(annotations, Annotation)) == 8
    # the random judge model never wrote three blocks: every reply is a recorded failure, none a score
    from storage.schemas import Failure

    failures = [
        f for p in (store.artifacts / "annotation-shard").iterdir() for f in read_rows(p, Failure, "failures")
    ]
    assert len(failures) == 8 and len({f.item_id for f in failures}) == 8
    reliability = read_rows(
        annotations, __import__("storage.schemas").schemas.JudgeReliability, "reliability"
    )
    rrm = next(r for r in reliability if r.family == "process" and r.judge != "reference")
    assert (rrm.failed, rrm.parse_failure_rate) == (8, 1.0)


# --- selection on rewards and refined steps -------------------------------------------------------


def _ann(tid, task="t1", em=1.0, ratings=(5, 5)):
    return Annotation(
        trajectory_id=tid, task_id=task, policy="p", exact_match=em, f1=em, step_ratings=list(ratings),
        mean_rating=sum(ratings) / len(ratings), min_rating=min(ratings), tool_calls=1, judge="reference",
    )  # fmt: skip


def _rewards(tid, search_r2, reagent):
    return Rewards(
        trajectory_id=tid, task_id="t1", policy="p", outcome=1.0, f1=1.0, search_r2=search_r2, reagent=reagent
    )


def test_selection_filters_and_ranks_on_any_reward():
    annotations = [_ann("a"), _ann("b"), _ann("c")]
    rewards = [_rewards("a", 1.0, 1.1), _rewards("b", 2.0, 1.0), _rewards("c", None, 1.3)]
    by_rating = select(annotations, SelectConfig(max_per_task=1), rewards)
    assert [s.trajectory_id for s in by_rating] == ["a"]  # equal ratings: the id breaks the tie
    assert [
        s.trajectory_id for s in select(annotations, SelectConfig(max_per_task=1, rank_by="reagent"), rewards)
    ] == ["c"]
    searched = SelectConfig(max_per_task=3, filter_reward="search_r2", min_reward=1.5)
    assert [s.trajectory_id for s in select(annotations, searched, rewards)] == ["b"]  # c: unknown, not kept


def test_a_refined_step_becomes_the_training_target(tool, two_tasks):
    task = two_tasks[0]
    bad = "<think>guess</think><search>qqqq zzzz</search>"
    policy = StatePolicy(
        lambda m, s: [bad, "<answer>Nobody</answer>"][min(sum(x["role"] == "assistant" for x in m), 1)]
    )
    (trajectory,), _ = run_agent(policy, tool, [task], config=AgentConfig(max_turns=3))
    from tasks.judge.reference import reference_judgements

    step_judgement = reference_judgements(trajectory, task, trajectory.final_answer)[0]
    assert step_judgement.step_ratings == [2, 1]
    example = refined_example(trajectory, step_judgement, below=3)
    messages = json.loads(example.messages_json)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[-1]["tool_calls"][0]["function"]["arguments"] == {"query": hop_query(task.hops[0])}
    assert example.parent_id == trajectory.id and example.cut_step == 0 and len(example.steps) == 1
    assert Trajectory.model_validate(example.model_dump()) == example


# --- critique-and-refine (Reagent-C) ----------------------------------------------------------------


def second_try_policy(task):
    """Answers at once without searching; after a critique, searches both hops and answers."""

    def reply(messages, seed):
        critiqued = any(m["role"] == "user" and m["content"].startswith("A reviewer read") for m in messages)
        if not critiqued:
            return "<think>I know this</think><answer>Nobody</answer>"
        after = [
            m
            for m in messages[
                next(i for i, m in enumerate(messages) if m["content"].startswith("A reviewer")) :
            ]
        ]
        turn = sum(m["role"] == "assistant" for m in after)
        if turn < len(task.hops):
            return f"<search>{hop_query(task.hops[turn])}</search>"
        return f"<answer>{task.answer}</answer>"

    return StatePolicy(reply)


def test_critique_and_refine_keeps_both_attempts_linked(tool, two_tasks):
    task = two_tasks[0]
    config = AgentConfig(max_turns=3, refine=RefineConfig(mode="critique-and-refine"))
    trajectories, failures = run_agent(second_try_policy(task), tool, [task], config=config)
    first, second = sorted(trajectories, key=lambda t: t.revision)
    assert first.final_answer == "Nobody" and second.final_answer == task.answer
    assert (second.revision, second.parent_id, second.cut_step) == (1, first.id, 1)
    assert second.steps[0] == first.steps[0] and [s.action for s in second.steps[1:]] == [
        "search",
        "search",
        "answer",
    ]
    messages = json.loads(second.messages_json)
    critique = next(m["content"] for m in messages if m["role"] == "user" and "reviewer" in m["content"])
    assert "No search was made" in critique and task.answer not in critique
    assert failures == []


def test_a_critique_that_names_the_answer_is_never_shown(tool, two_tasks):
    task = two_tasks[0]

    class Leaky:
        failures: list = []

        def critique(self, attempts):
            return [Critique(f"The answer is {task.answer}.", 0.1) for _ in attempts]

    config = AgentConfig(max_turns=3, refine=RefineConfig(mode="critique-and-refine"))
    trajectories, failures = run_agent(second_try_policy(task), tool, [task], config=config, critic=Leaky())
    assert [t.revision for t in trajectories] == [0]
    assert [f.error_class for f in failures] == ["CritiqueLeaksAnswer"]


def test_a_reward_model_critic_drives_critique_and_refine(tool, two_tasks):
    task = two_tasks[0]
    rrm = StatePolicy(
        lambda m, s: "<think>no search</think><critique>Look the facts up.</critique><score>0.1</score>"
    )
    config = AgentConfig(max_turns=3, refine=RefineConfig(mode="critique-and-refine"))
    trajectories, _ = run_agent(second_try_policy(task), tool, [task], config=config, critic=LLMCritic(rrm))
    second = max(trajectories, key=lambda t: t.revision)
    assert "Look the facts up." in second.messages_json and second.final_answer == task.answer

    unreadable = LLMCritic(StatePolicy(lambda m, s: "fine"))
    trajectories, failures = run_agent(
        second_try_policy(task), tool, [task], config=config, critic=unreadable
    )
    assert [t.revision for t in trajectories] == [0]
    assert [(f.error_class, f.attempts) for f in failures] == [("JudgeOutputError", 2)]


def test_evaluation_refuses_critique_and_refine():
    with pytest.raises(ValidationError, match="policy alone"):
        EvalConfig(agent={"refine": {"mode": "critique-and-refine"}})
