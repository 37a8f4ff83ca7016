"""Mechanics of the agent loop with a scripted policy, and the oracle through the real tools."""

import json

from tasks.agent.environment import ToolConfig
from tasks.agent.loop import AgentConfig, run_agent
from tasks.agent.oracle import oracle_trajectory
from tasks.agent.protocol import INVALID_ACTION_FEEDBACK, parse_turn
from tasks.judge.annotate import annotate
from tasks.llm.hf import cut_at_stop
from tasks.search.tools import SearchTool
from tasks.synthesis.evidence import load_tasks
from tests.policies import StatePolicy


class ScriptedPolicy(StatePolicy):
    """Replies from a script per task question, one reply per turn (the last one repeats)."""

    def __init__(self, script):
        def reply(messages, seed):
            turn = sum(m["role"] == "assistant" for m in messages)
            replies = script(messages[1]["content"])
            return replies[min(turn, len(replies) - 1)]

        super().__init__(reply)


def test_parse_turn():
    turn = parse_turn("<think>find the founder</think>\n<search>Acme founded by</search>")
    assert (turn.action, turn.argument, turn.thought) == ("search", "Acme founded by", "find the founder")
    assert parse_turn("I think it is Paris").action == "invalid"
    assert parse_turn("<answer> </answer>").action == "invalid"
    assert parse_turn("<answer>Paris</answer>").argument == "Paris"


def test_cut_at_stop_keeps_the_first_action_only():
    assert cut_at_stop("<search>a</search><search>b", ("</search>", "</answer>")) == "<search>a</search>"


def test_all_trajectories_advance_in_one_batch_per_turn(index_ref, tasks_ref):
    tasks = load_tasks(tasks_ref, "train")[:3]
    answer_of = {f"Question: {t.question}": t.answer for t in tasks}
    policy = ScriptedPolicy(
        lambda q: ["<think>look</think><search>x</search>", f"<answer>{answer_of[q]}</answer>"]
    )
    trajectories, failures = run_agent(
        policy, SearchTool(index_ref.uri), tasks, config=AgentConfig(max_turns=4), samples_per_task=2
    )
    assert policy.batches == [6, 6]  # two turns, every rollout in each batch
    assert len(trajectories) == 6 and len({t.id for t in trajectories}) == 6
    assert all(t.finished and [s.action for s in t.steps] == ["search", "answer"] for t in trajectories)
    messages = json.loads(trajectories[0].messages_json)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["tool_calls"][0]["function"] == {"name": "search", "arguments": {"query": "x"}}
    assert failures == []


def test_invalid_actions_get_feedback_and_turn_limit_ends_rollout(index_ref, tasks_ref):
    tasks = load_tasks(tasks_ref, "train")[:1]
    policy = ScriptedPolicy(lambda q: ["no tags at all", "<open>no-such-doc</open>"])
    (trajectory,), failures = run_agent(
        policy, SearchTool(index_ref.uri), tasks, config=AgentConfig(max_turns=3)
    )
    assert not trajectory.finished and trajectory.final_answer is None
    assert [s.action for s in trajectory.steps] == ["invalid", "open", "open"]
    assert trajectory.steps[0].observation == INVALID_ACTION_FEEDBACK
    assert [f.error_class for f in failures] == ["UnknownDocument", "UnknownDocument"]
    assert failures[0].raw_output == "<open>no-such-doc</open>"


def test_context_budget_ends_rollout(index_ref, tasks_ref):
    tasks = load_tasks(tasks_ref, "train")[:1]
    policy = ScriptedPolicy(lambda q: ["<search>" + "word " * 200 + "</search>"])
    (trajectory,), _ = run_agent(
        policy, SearchTool(index_ref.uri), tasks, config=AgentConfig(max_turns=10, max_prompt_tokens=700)
    )
    assert 0 < len(trajectory.steps) < 10 and not trajectory.finished


def test_oracle_solves_every_task_through_the_real_search(index_ref, tasks_ref):
    tool = SearchTool(index_ref.uri)
    for task in load_tasks(tasks_ref):
        trajectory, found_by_search = oracle_trajectory(task, tool, ToolConfig())
        assert found_by_search
        annotation = annotate(trajectory, task)
        assert annotation.exact_match == 1.0
        # A later hop's page can already show up in an earlier search, so its search may rate 3.
        assert annotation.step_ratings[0] == annotation.step_ratings[-1] == 5
        assert min(annotation.step_ratings) >= 3
