"""Rollout benchmark: multi-turn agent rollouts, the engine as shipped against re-encoding in fp32.

The workload: every train task of a synthetic world, K sampled rollouts each, through the real
agent loop with the real bm25s search tool and default observation length. The base SmolLM2 rarely
writes a well-formed action, and an invalid action gets a short corrective message instead of
search results; so that every turn carries a realistic observation, a turn without a valid action
is completed with ``<search>{the task's question}</search>`` (the same rewrite in every run).

Timed in one process:

* ``naive``: the loop on plain ``model.generate`` in fp32, re-encoding each whole conversation
  every turn (what the ``hf:`` engine did before KV reuse);
* ``loop``: the loop on the ``hf:`` engine as shipped (native precision, KV reuse across turns);
* ``floor``: one forward pass over the conversations that ``loop`` ended with, no generation:
  encoding every token once, in the engine's precision. ``loop_over_floor`` is how far the loop
  is from it.

``greedy_agreement``: greedy rollouts in fp32 through the engine, every turn's prompts also run
through plain ``model.generate``; the share of rollouts whose generated token ids agree with it on
every turn (near-ties may flip under a different floating-point order). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from storage import ArtifactStore  # noqa: E402
from storage.schemas import Trajectory  # noqa: E402
from tasks.agent.loop import AgentConfig, run_agent  # noqa: E402
from tasks.agent.protocol import parse_turn  # noqa: E402
from tasks.corpus.world import WorldConfig  # noqa: E402
from tasks.llm.hf import Generation, HFGenerator  # noqa: E402
from tasks.llm.models import BaseModelConfig  # noqa: E402
from tasks.search.index import IndexConfig  # noqa: E402
from tasks.search.tools import SearchTool  # noqa: E402
from tasks.stage import execute_stage  # noqa: E402
from tasks.synthesis.evidence import load_tasks  # noqa: E402
from tasks.synthesis.stage import SynthesisConfig  # noqa: E402

QUESTION = re.compile(r"Question: (.*?)<\|im_end\|>", re.S)


class SearchingPolicy:
    """The generator, with turns that lack a valid action completed by a search for the question."""

    def __init__(self, generator: HFGenerator) -> None:
        self.generator = generator

    def render(self, messages: list[dict]) -> str:
        return self.generator.render(messages)

    def count_tokens(self, text: str) -> int:
        return self.generator.count_tokens(text)

    def generate(self, prompts: list[str], **kwargs) -> list[Generation]:
        return complete_actions(prompts, self.generator.generate(prompts, **kwargs))


def complete_actions(prompts: list[str], generations: list) -> list[Generation]:
    out = []
    for prompt, g in zip(prompts, generations, strict=True):
        text = g.text
        if parse_turn(text).action == "invalid":
            question = QUESTION.search(prompt)
            text += f"<search>{question.group(1) if question else 'the question'}</search>"
        out.append(Generation(text=text, tokens=g.tokens, latency_s=g.latency_s))
    return out


class AgreementPolicy(SearchingPolicy):
    """Greedy through the engine; the same prompts through plain ``model.generate`` for comparison."""

    def __init__(self, generator: HFGenerator) -> None:
        super().__init__(generator)
        self.agrees: dict[str, bool] = {}

    def generate(self, prompts: list[str], **kwargs) -> list[Generation]:
        kwargs["temperature"] = 0.0
        engine = self.generator.generate_tokens(prompts, **kwargs)
        plain = self.generator.generate_tokens(prompts, **kwargs, reuse_kv=False)
        for prompt, a, b in zip(prompts, engine, plain, strict=True):
            self.agrees[prompt] = a.token_ids == b.token_ids
        return complete_actions(prompts, engine)


def turn_prompts(policy: SearchingPolicy, trajectory: Trajectory) -> list[str]:
    messages = json.loads(trajectory.messages_json)
    return [policy.render(messages[:i]) for i, m in enumerate(messages) if m["role"] == "assistant"]


def timed_rollouts(policy, tool, tasks, config: AgentConfig, samples: int, temperature: float):
    started = time.perf_counter()
    trajectories, _ = run_agent(
        policy, tool, tasks, config=config, samples_per_task=samples, temperature=temperature, seed=1
    )
    return trajectories, time.perf_counter() - started


@torch.inference_mode()
def floor_seconds(generator: HFGenerator, texts: list[str], token_budget: int = 4096) -> float:
    """One forward pass over every final conversation, in batches of similar length."""
    encoded = sorted((generator._encode(t) for t in texts), key=len)
    started = time.perf_counter()
    start = 0
    while start < len(encoded):
        end = start + 1
        while end < len(encoded) and (end + 1 - start) * len(encoded[end]) <= token_budget:
            end += 1
        batch = encoded[start:end]
        width = len(batch[-1])
        ids = torch.full((len(batch), width), generator.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, width - len(row) :] = torch.from_numpy(row)
            mask[i, width - len(row) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generator.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
        start = end
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", help="a transformers model directory (default: SmolLM2, converted once)"
    )
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2, help="rollouts per task")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument(
        "--temperature", type=float, default=0.8, help="sampling temperature of the timed runs"
    )
    parser.add_argument("--skip-naive", action="store_true", help="leave out the (slow) fp32 re-encoding run")
    parser.add_argument("--skip-agreement", action="store_true", help="leave out the greedy agreement run")
    parser.add_argument("--home", help="store for the world, index and converted model (default: temporary)")
    args = parser.parse_args()

    store = ArtifactStore(args.home or tempfile.mkdtemp(prefix="rollout-bench-"))
    world = execute_stage("world", store, WorldConfig(), {})
    index = execute_stage("index", store, IndexConfig(), {"corpus": world})
    task_ref = execute_stage(
        "synthesize",
        store,
        SynthesisConfig(train_tasks=args.tasks, eval_tasks=4),
        {"world": world, "index": index},
    )
    tasks = load_tasks(task_ref, "train")
    model_dir = args.model_dir or execute_stage("base-model", store, BaseModelConfig(), {}).uri
    rollouts = len(tasks) * args.samples
    tool = SearchTool(index.uri)
    config = AgentConfig(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens)
    run = lambda policy, temperature: timed_rollouts(  # noqa: E731
        policy, tool, tasks, config, args.samples, temperature
    )

    shipped = HFGenerator(model_dir, batch_size=rollouts)
    shipped.generate(["warm-up"], max_new_tokens=2)
    trajectories, loop_s = run(SearchingPolicy(shipped), args.temperature)
    loop_tokens = sum(t.generated_tokens for t in trajectories)
    finals = [shipped.render(json.loads(t.messages_json)) for t in trajectories]
    floor_s = floor_seconds(shipped, finals)
    result = {
        "rollouts": rollouts,
        "turns": args.max_turns,
        "device": shipped.device,
        "dtype": shipped.precision,
        "final_conversation_tokens": sum(shipped.count_tokens(f) for f in finals),
        "tokens_loop": loop_tokens,
        "prefilled_tokens": shipped.engine.prefilled_tokens if shipped.engine else None,
        "reused_tokens": shipped.engine.reused_tokens if shipped.engine else None,
        "loop_s": round(loop_s, 2),
        "floor_s": round(floor_s, 2),
        "loop_over_floor": round(loop_s / floor_s, 2),
        "tok_s_loop": round(loop_tokens / loop_s, 1),
    }
    print(json.dumps(result), flush=True)
    del shipped

    if not args.skip_naive:
        naive = HFGenerator(model_dir, batch_size=rollouts, precision="fp32", reuse_kv=False)
        naive.generate(["warm-up"], max_new_tokens=2)
        trajectories, naive_s = run(SearchingPolicy(naive), args.temperature)
        naive_tokens = sum(t.generated_tokens for t in trajectories)
        result |= {
            "tokens_naive_fp32": naive_tokens,
            "naive_s": round(naive_s, 2),
            "tok_s_naive_fp32": round(naive_tokens / naive_s, 1),
            "speedup_vs_naive": round((loop_tokens / loop_s) / (naive_tokens / naive_s), 2),
        }
        print(json.dumps(result), flush=True)
        del naive

    if not args.skip_agreement:
        exact = HFGenerator(model_dir, batch_size=rollouts, precision="fp32")
        policy = AgreementPolicy(exact)
        trajectories, _ = run(policy, 0.0)
        agreeing = [all(policy.agrees[p] for p in turn_prompts(policy, t)) for t in trajectories]
        result |= {"greedy_agreement": round(sum(agreeing) / len(agreeing), 3)}

    # Other work on the machine slows the token-by-token phases most: the load shows whether any ran.
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
