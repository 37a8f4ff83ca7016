"""Mechanics of rate-and-refine and cut-and-regenerate: when they trigger, where they cut, their caps."""

from __future__ import annotations

import json

from tasks.agent.loop import AgentConfig, RefineConfig, run_agent
from tasks.agent.oracle import hop_query
from tasks.llm.hf import HFGenerator
from tests.policies import StatePolicy

BAD_SEARCH = "<think>guess</think><search>qqqq zzzz</search>"


def good_search(task, hop_index: int) -> str:
    return f"<think>next fact</think><search>{hop_query(task.hops[hop_index])}</search>"


def agent(mode: str, **refine) -> AgentConfig:
    return AgentConfig(max_turns=3, refine=RefineConfig(mode=mode, **refine))


def test_rate_and_refine_regenerates_only_steps_rated_below_the_threshold(tool, two_tasks):
    weak, strong = two_tasks

    def reply(messages, seed):
        question = messages[1]["content"]
        task = weak if weak.question in question else strong
        if messages[-1]["role"] == "user" and messages[-1]["content"].startswith("A reviewer rated"):
            return good_search(task, 0)  # the retry, after the critique
        turn = sum(m["role"] == "assistant" for m in messages)
        if turn == 0:
            return BAD_SEARCH if task is weak else good_search(task, 0)
        return f"<answer>{task.answer}</answer>"

    policy = StatePolicy(reply)
    trajectories, _ = run_agent(policy, tool, two_tasks, config=agent("rate-and-refine"))
    by_task = {t.task_id: t for t in trajectories}
    refined, untouched = by_task[weak.id].steps[0], by_task[strong.id].steps[0]
    rejected = json.loads(refined.rejected_json)
    assert len(rejected) == 1 and rejected[0]["raw"] == BAD_SEARCH and rejected[0]["rating"] == 2
    assert hop_query(weak.hops[0]) in rejected[0]["critique"]  # the critique names what is missing
    assert refined.argument == hop_query(weak.hops[0]) and refined.critic_rating == 5
    assert json.loads(untouched.rejected_json) == [] and untouched.critic_rating == 5
    assert policy.batches[:2] == [2, 1]  # one retry batch, holding only the weak step
    # The kept conversation holds the accepted step only; the rejected one lives in the step record.
    assert BAD_SEARCH not in by_task[weak.id].messages_json

    # At threshold 2 a rating of 2 is not below it: nothing is regenerated.
    policy = StatePolicy(reply)
    trajectories, _ = run_agent(policy, tool, two_tasks, config=agent("rate-and-refine", threshold=2))
    assert all(json.loads(s.rejected_json) == [] for t in trajectories for s in t.steps)
    assert policy.batches[:2] == [2, 2]


def test_rate_and_refine_honours_the_retry_cap_on_a_tiny_model(tiny_model, tool, two_tasks):
    # A random model writes no valid action, so every step is rated 1 and refined until the cap.
    policy = HFGenerator(tiny_model.uri, device="cpu")
    trajectories, _ = run_agent(
        policy,
        tool,
        two_tasks,
        config=AgentConfig(
            max_turns=2, max_new_tokens=8, refine=RefineConfig(mode="rate-and-refine", max_refines=2)
        ),
    )
    steps = [s for t in trajectories for s in t.steps]
    assert len(steps) == 4
    for step in steps:
        assert step.critic_rating == 1 and len(json.loads(step.rejected_json)) == 2


def test_cut_and_regenerate_keeps_the_prefix_before_the_first_flawed_step(tool, two_tasks):
    task = two_tasks[0]
    # Like a sampling model: a conversation's first sample goes wrong at step 1, and only another
    # sample (another seed) of that same conversation gets it right. Repeating a seed repeats the
    # flaw, so the revision holds the right step only if the loop really asked for a new sample.
    seeds: dict[str, list[int]] = {}

    def reply(messages, seed):
        turn = sum(m["role"] == "assistant" for m in messages)
        asked = seeds.setdefault(json.dumps(messages), [])
        asked.append(seed)
        if turn == 0:
            return good_search(task, 0)
        if turn == 1:
            return BAD_SEARCH if seed == asked[0] else good_search(task, 1)
        return f"<answer>{task.answer}</answer>"

    trajectories, _ = run_agent(StatePolicy(reply), tool, [task], config=agent("cut-and-regenerate"))
    # The policy was asked to continue one and the same conversation (the cut one) twice, with two
    # different seeds: once in the first rollout and once in the revision.
    after_step_0 = [m for m in seeds if sum(x["role"] == "assistant" for x in json.loads(m)) == 1]
    assert len(after_step_0) == 1 and len(set(seeds[after_step_0[0]])) == 2
    first, revision = sorted(trajectories, key=lambda t: t.revision)
    assert (revision.revision, revision.parent_id, revision.cut_step) == (1, first.id, 1)
    assert revision.steps[0] == first.steps[0]  # the prefix is kept as it was
    assert first.steps[1].argument == "qqqq zzzz" and revision.steps[1].argument == hop_query(task.hops[1])
    assert json.loads(revision.messages_json)[:3] == json.loads(first.messages_json)[:3]
    assert revision.final_answer == task.answer and revision.id != first.id


def test_cut_and_regenerate_stops_at_the_revision_cap(tool, two_tasks):
    always_flawed = StatePolicy(lambda messages, seed: BAD_SEARCH)
    for cap in (1, 2):
        trajectories, _ = run_agent(
            always_flawed, tool, two_tasks, config=agent("cut-and-regenerate", max_revisions=cap)
        )
        assert sorted(t.revision for t in trajectories) == sorted([r for r in range(cap + 1)] * 2)
        for t in trajectories:
            if t.revision:
                parent = next(p for p in trajectories if p.id == t.parent_id)
                assert parent.revision == t.revision - 1 and t.cut_step == 0

    # A trajectory with no flawed step is accepted as it is.
    task = two_tasks[0]
    perfect = StatePolicy(
        lambda m, s: [good_search(task, 0), good_search(task, 1), f"<answer>{task.answer}</answer>"][
            sum(x["role"] == "assistant" for x in m)
        ]
    )
    trajectories, _ = run_agent(perfect, tool, [task], config=agent("cut-and-regenerate"))
    assert [t.revision for t in trajectories] == [0]
