"""Real TRL steps and real generation on the tiny model."""

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tasks.agent.environment import ToolConfig
from tasks.agent.oracle import oracle_trajectory
from tasks.evaluate.summary import EvalConfig, evaluate_policy
from tasks.llm.hf import HFGenerator
from tasks.search.tools import SearchTool
from tasks.synthesis.two_hop import load_tasks
from tasks.train.sft import TrainConfig, train_sft


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


def test_batched_generation_stops_each_sequence_at_its_stop_string(tiny_model):
    generator = HFGenerator(tiny_model.uri, batch_size=4)
    prompts = [generator.render([{"role": "user", "content": f"question {i}"}]) for i in range(5)]
    out = generator.generate(prompts, max_new_tokens=12, temperature=0.0, stop=("</search>",))
    assert len(out) == 5 and all(0 < g.tokens <= 12 for g in out)
    again = generator.generate(prompts, max_new_tokens=12, temperature=0.0, stop=("</search>",))
    assert [g.text for g in out] == [g.text for g in again]  # greedy is deterministic


def test_evaluation_scores_every_held_out_task(tiny_model, index_ref, tasks_ref):
    generator = HFGenerator(tiny_model.uri)
    tasks = load_tasks(tasks_ref, "eval")
    trajectories, rows, summary = evaluate_policy(
        generator,
        SearchTool(index_ref.uri),
        tasks,
        EvalConfig(samples_per_task=2, agent={"max_turns": 2, "max_new_tokens": 16}),
        "tiny",
    )
    assert len(trajectories) == len(rows) == 2 * len(tasks)
    assert summary.tasks == len(tasks) and 0.0 <= summary.pass_at_1 <= summary.pass_at_k <= 1.0
