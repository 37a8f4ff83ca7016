"""Rollout benchmark: the same agent rollouts batched and one at a time, and the loop's overhead.

``tok_s_batched``: the agent loop with every active trajectory in one generation per turn.
``tok_s_sequential``: the same rollouts (greedy, so the same work) with a batch of one.
``engine_efficiency``: the batched loop's tokens/s over plain ``model.generate`` on the prompts the
loop sent, batch by batch, run to the same lengths — what the loop's rendering, stop strings,
parsing and tool calls cost on top of generation. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from storage import ArtifactStore  # noqa: E402
from tasks.agent.loop import AgentConfig, run_agent  # noqa: E402
from tasks.corpus.world import WorldConfig  # noqa: E402
from tasks.llm.hf import HFGenerator  # noqa: E402
from tasks.llm.models import BaseModelConfig  # noqa: E402
from tasks.search.index import IndexConfig  # noqa: E402
from tasks.search.tools import SearchTool  # noqa: E402
from tasks.stage import execute_stage  # noqa: E402
from tasks.synthesis.two_hop import SynthesisConfig, load_tasks  # noqa: E402


class RecordingPolicy:
    """Passes through to the generator and keeps each call's prompts and generated lengths."""

    def __init__(self, generator: HFGenerator) -> None:
        self.generator = generator
        self.calls: list[tuple[list[str], list[int]]] = []

    def render(self, messages):
        return self.generator.render(messages)

    def count_tokens(self, text):
        return self.generator.count_tokens(text)

    def generate(self, prompts, **kwargs):
        out = self.generator.generate(prompts, **kwargs)
        self.calls.append((prompts, [g.tokens for g in out]))
        return out


def timed_rollouts(policy, tool, tasks, config: AgentConfig, samples: int) -> tuple[int, float]:
    started = time.perf_counter()
    trajectories, _ = run_agent(policy, tool, tasks, config=config, samples_per_task=samples)
    return sum(t.generated_tokens for t in trajectories), time.perf_counter() - started


@torch.inference_mode()
def plain_generate_seconds(generator: HFGenerator, calls: list[tuple[list[str], list[int]]]) -> float:
    """model.generate on the recorded batches, each run to its longest recorded generation."""
    tok = generator.tokenizer
    elapsed = 0.0
    for prompts, lengths in calls:
        for start in range(0, len(prompts), generator.batch_size):
            batch = prompts[start : start + generator.batch_size]
            longest = max(lengths[start : start + generator.batch_size])
            if longest == 0:
                continue
            encoded = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            started = time.perf_counter()
            generator.model.generate(
                **encoded,
                max_new_tokens=longest,
                min_new_tokens=longest,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
            elapsed += time.perf_counter() - started
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", help="a transformers model directory (default: SmolLM2, converted once)"
    )
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2, help="rollouts per task")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--home", help="store for the world, index and converted model (default: temporary)")
    args = parser.parse_args()

    store = ArtifactStore(args.home or tempfile.mkdtemp(prefix="rollout-bench-"))
    world = execute_stage("world", store, WorldConfig(), {})
    index = execute_stage("index", store, IndexConfig(), {"corpus": world})
    task_ref = execute_stage(
        "synthesize", store, SynthesisConfig(train_tasks=args.tasks, eval_tasks=4), {"world": world}
    )
    tasks = load_tasks(task_ref, "train")
    model_dir = args.model_dir or execute_stage("base-model", store, BaseModelConfig(), {}).uri
    rollouts = len(tasks) * args.samples
    generator = HFGenerator(model_dir, batch_size=rollouts)
    tool = SearchTool(index.uri)
    config = AgentConfig(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens)

    generator.generate(["warm-up"], max_new_tokens=2)
    recorder = RecordingPolicy(generator)
    batched_tokens, batched_s = timed_rollouts(recorder, tool, tasks, config, args.samples)
    plain_s = plain_generate_seconds(generator, recorder.calls)

    generator.batch_size = 1
    sequential_tokens, sequential_s = timed_rollouts(generator, tool, tasks, config, args.samples)

    tok_s_batched = batched_tokens / batched_s
    tok_s_sequential = sequential_tokens / sequential_s
    print(
        json.dumps(
            {
                "rollouts": rollouts,
                "device": generator.device,
                "dtype": str(generator.dtype).removeprefix("torch."),
                "tokens_batched": batched_tokens,
                "tokens_sequential": sequential_tokens,
                "tok_s_batched": round(tok_s_batched, 1),
                "tok_s_sequential": round(tok_s_sequential, 1),
                "speedup": round(tok_s_batched / tok_s_sequential, 2),
                "tok_s_plain_generate": round(batched_tokens / plain_s, 1),
                "engine_efficiency": round(plain_s / batched_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
