"""Real TRL steps and real generation on the tiny model."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tasks.agent.environment import ToolConfig
from tasks.agent.oracle import oracle_trajectory
from tasks.evaluate.summary import EvalConfig, evaluate_policy
from tasks.llm.hf import Generation
from tasks.search.tools import SearchTool
from tasks.synthesis.evidence import load_tasks
from tasks.train.sft import TrainConfig, train_sft
from tests.policies import StatePolicy


def test_template_masks_everything_but_assistant_turns(tiny_model, index_ref, tasks_ref):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model.uri)
    task = load_tasks(tasks_ref)[0]
    trajectory, _ = oracle_trajectory(task, SearchTool(index_ref.uri), ToolConfig())
    encoded = tokenizer.apply_chat_template(
        json.loads(trajectory.messages_json),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    trained = tokenizer.decode(
        [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    )
    assert "<search>" in trained and f"<answer>{task.answer}</answer>" in trained
    assert "<information>" not in trained and "Question:" not in trained  # observations and prompt are masked


def test_sft_steps_change_every_parameter_and_log_loss(tiny_model, index_ref, tasks_ref, tmp_path):
    tool = SearchTool(index_ref.uri)
    trajectories = [oracle_trajectory(t, tool, ToolConfig())[0] for t in load_tasks(tasks_ref, "train")[:4]]
    metrics = train_sft(
        tiny_model.uri, trajectories, TrainConfig(max_steps=2, batch_size=2, learning_rate=1e-3), tmp_path
    )
    assert metrics["steps"] == 2 and metrics["first_loss"] is not None
    before = AutoModelForCausalLM.from_pretrained(tiny_model.uri).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path).state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) == len(before)


def test_evaluation_scores_every_held_out_task(index_ref, tasks_ref):
    """Greedy wrong everywhere, the sampled answer right on half the tasks: pass@1 0, pass@2 one half,
    and pass@1 estimated from both samples (pass_k=1 of n=2) one quarter."""
    tasks = load_tasks(tasks_ref, "eval")
    solved_when_sampling = {t.question: t.answer for t in tasks[::2]}

    def reply(messages, seed, temperature):
        question = messages[1]["content"].removeprefix("Question: ")
        return f"<answer>{solved_when_sampling.get(question, 'nobody') if temperature > 0 else 'nobody'}</answer>"

    class Policy(StatePolicy):
        def generate(self, prompts, *, max_new_tokens, temperature, seed, stop):
            return [Generation(reply(json.loads(p), seed, temperature), 3, 0.0) for p in prompts]

    for pass_k, expected in (
        (None, len(solved_when_sampling) / len(tasks)),
        (1, len(solved_when_sampling) / len(tasks) / 2),
    ):
        trajectories, rows, summary, failures = evaluate_policy(
            Policy(None),
            SearchTool(index_ref.uri),
            tasks,
            EvalConfig(samples_per_task=2, pass_k=pass_k, agent={"max_turns": 2}),
            "scripted",
        )
        assert len(trajectories) == len(rows) == 2 * len(tasks) and not failures
        assert len({t.id for t in trajectories}) == 2 * len(tasks)
        assert sorted(r.sample_index for r in rows) == [0] * len(tasks) + [1] * len(tasks)
        assert summary.tasks == len(tasks) and summary.pass_at_1 == 0.0
        assert summary.pass_at_k == pytest.approx(expected)
