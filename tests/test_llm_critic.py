"""A language model as the critic: judge prompts, parsing, and unreadable replies kept as failures."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tasks.agent.loop import AgentConfig, RefineConfig, run_agent
from tasks.agent.oracle import hop_query
from tasks.judge.llm_critic import LLMCritic
from tasks.judge.prompts import JudgeOutputError, parse_cut, parse_rating
from tasks.llm.engines import load_engine
from tests.policies import StatePolicy

BAD_SEARCH = "<think>guess</think><search>qqqq zzzz</search>"


def test_judge_replies_are_parsed_or_rejected_with_their_text():
    assert parse_rating("Rating: 2\nCritique: search for the founder instead.") == (
        2,
        "search for the founder instead.",
    )
    assert parse_rating("rating = 5") == (5, "")
    with pytest.raises(JudgeOutputError) as error:
        parse_rating("I think it is fine")
    assert error.value.raw == "I think it is fine"
    with pytest.raises(JudgeOutputError):
        parse_rating("Rating: 7")
    assert parse_cut("First flawed step: 2", 3) == 1
    assert parse_cut("First flawed step: none", 3) is None
    with pytest.raises(JudgeOutputError, match="not one of the 3 steps"):
        parse_cut("First flawed step: 4", 3)


def scripted_agent(task_of, weak, feedback: list[str] | None = None):
    """A policy that searches badly first for the ``weak`` task, and well after any critique."""

    def reply(messages, seed):
        task = task_of(messages)
        if messages[-1]["content"].startswith("A reviewer rated"):
            if feedback is not None:
                feedback.append(messages[-1]["content"])
            return f"<search>{hop_query(task.hops[0])}</search>"
        if sum(m["role"] == "assistant" for m in messages) == 0:
            return BAD_SEARCH if task is weak else f"<search>{hop_query(task.hops[0])}</search>"
        return f"<answer>{task.answer}</answer>"

    return StatePolicy(reply)


def test_a_judge_model_drives_rate_and_refine_and_its_unreadable_replies_become_failures(tool, two_tasks):
    weak, strong = two_tasks

    def task_of(messages):
        return weak if weak.question in messages[1]["content"] else strong

    def judge(messages, seed):
        proposal = messages[-1]["content"].rsplit("Proposed step: ", 1)[1]
        return "Rating: 1\nCritique: look up the first fact." if "qqqq" in proposal else "Rating: 5"

    config = AgentConfig(max_turns=3, refine=RefineConfig(mode="rate-and-refine"))
    feedback: list[str] = []
    trajectories, failures = run_agent(
        scripted_agent(task_of, weak, feedback),
        tool,
        two_tasks,
        config=config,
        critic=LLMCritic(StatePolicy(judge)),
    )
    by_task = {t.task_id: t for t in trajectories}
    rejected = json.loads(by_task[weak.id].steps[0].rejected_json)
    assert [(r["rating"], r["critique"]) for r in rejected] == [(1, "look up the first fact.")]
    assert feedback == ["A reviewer rated that step 1/5: look up the first fact. Write a better step."]
    assert by_task[weak.id].steps[0].critic_rating == 5  # the regenerated step, judged again
    assert json.loads(by_task[strong.id].steps[0].rejected_json) == [] and failures == []

    # A judge that does not answer in the format: no refine, no rating, every reply kept as a failure.
    critic = LLMCritic(StatePolicy(lambda messages, seed: "looks fine to me"))
    trajectories, failures = run_agent(
        scripted_agent(task_of, weak), tool, two_tasks, config=config, critic=critic, samples_per_task=2
    )
    steps = [s for t in trajectories for s in t.steps]
    assert all(s.critic_rating is None and json.loads(s.rejected_json) == [] for s in steps)
    # one failure per judged step, each under its own id: two samples' same step are two items
    assert len({f.item_id for f in failures}) == len(failures) == len(steps)
    assert f"{weak.id}#s1#r0#t0#rate" in {f.item_id for f in failures}
    assert {(f.error_class, f.raw_output) for f in failures} == {("JudgeOutputError", "looks fine to me")}


def test_a_judge_model_picks_the_cut_point(tool, two_tasks):
    task = two_tasks[0]
    policy = StatePolicy(
        lambda m, s: [f"<search>{hop_query(task.hops[0])}</search>", BAD_SEARCH, "<answer>x</answer>"][
            sum(x["role"] == "assistant" for x in m)
        ]
    )
    config = AgentConfig(max_turns=3, refine=RefineConfig(mode="cut-and-regenerate"))
    cut_at_two = LLMCritic(StatePolicy(lambda m, s: "First flawed step: 2"))
    trajectories, _ = run_agent(policy, tool, [task], config=config, critic=cut_at_two)
    first, revision = sorted(trajectories, key=lambda t: t.revision)
    assert revision.cut_step == 1 and revision.steps[0] == first.steps[0]

    accepts = LLMCritic(StatePolicy(lambda m, s: "First flawed step: none"))
    assert [t.revision for t in run_agent(policy, tool, [task], config=config, critic=accepts)[0]] == [0]

    unreadable = LLMCritic(StatePolicy(lambda m, s: "step two, probably"))
    trajectories, failures = run_agent(policy, tool, [task], config=config, critic=unreadable)
    assert [t.revision for t in trajectories] == [0]
    assert [(f.item_id, f.raw_output) for f in failures] == [
        (f"{task.id}#s0#r0#t3#cut", "step two, probably")
    ]


def test_a_real_model_as_critic_from_its_spec(tiny_model, tool, two_tasks):
    # A random model cannot follow the judge format: each reply is a failure holding its raw text.
    config = AgentConfig(
        max_turns=1,
        max_new_tokens=8,
        refine=RefineConfig(mode="rate-and-refine", critic=f"hf:{tiny_model.uri}"),
    )
    trajectories, failures = run_agent(load_engine(tiny_model.uri), tool, two_tasks, config=config)
    assert len(trajectories) == 2
    judged = [f for f in failures if f.error_class == "JudgeOutputError"]
    assert len(judged) == 2 and all(f.raw_output for f in judged)


def test_critic_and_engine_specs_are_checked():
    with pytest.raises(ValidationError, match="hf:PATH, vllm:PATH or openai:MODEL@URL"):
        RefineConfig(critic="gpt")
    with pytest.raises(ValidationError):
        AgentConfig(engine="tgi")


def test_the_vllm_engine_says_what_it_needs_where_vllm_is_missing(tiny_model):
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"pip install 'trailforge\[gpu\]'"):
            load_engine(tiny_model.uri, "vllm")
    else:  # pragma: no cover - only where vLLM is installed (a GPU machine)
        generator = load_engine(tiny_model.uri, "vllm")
        (generation,) = generator.generate(["Hello"], max_new_tokens=4)
        assert generation.tokens <= 4


def test_a_judge_that_gave_up_is_a_failure_with_the_backends_reason(tool, two_tasks):
    from tasks.llm.hf import Generation

    class GaveUp(StatePolicy):
        def generate(self, prompts, *, max_new_tokens, temperature, seed, stop):
            return [Generation("", 0, 0.0, error="HTTP 503 after 6 retries") for _ in prompts]

    policy = StatePolicy(lambda m, s: f"<search>{hop_query(two_tasks[0].hops[0])}</search>")
    config = AgentConfig(max_turns=1, refine=RefineConfig(mode="rate-and-refine"))
    _, failures = run_agent(policy, tool, two_tasks[:1], config=config, critic=LLMCritic(GaveUp(None)))
    assert [f.message for f in failures] == ["the judge model gave no reply (HTTP 503 after 6 retries)"]
