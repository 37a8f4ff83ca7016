"""The ``vllm`` engine: offline batched generation with vLLM on a GPU (the ``gpu`` extra).

The agent loop renders its prompts with Trailforge's chat template and hands every active
trajectory's prompt to one ``LLM.generate`` call per turn; vLLM schedules them with continuous
batching, and prefix caching shares the system prompt and the tool schema (identical at the start
of every prompt) and each trajectory's earlier turns across calls. One ``SamplingParams`` per prompt
carries its own seed, so a sample is reproducible whatever else is in the batch.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tasks.llm.hf import Generation, cut_at_stop


def sampling_kwargs(
    *, max_new_tokens: int, temperature: float, seed: int, stop: tuple[str, ...], end_of_turn: int
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` matching the ``hf`` engine's behaviour."""
    return {
        "n": 1,
        "temperature": temperature,
        "top_p": 1.0,
        "max_tokens": max_new_tokens,
        "seed": seed,
        "stop": list(stop) or None,
        "stop_token_ids": [end_of_turn],
        "include_stop_str_in_output": True,  # the loop parses the closing tag, as with hf
        "skip_special_tokens": True,
    }


class VLLMGenerator:
    """Same interface as :class:`tasks.llm.hf.HFGenerator`: ``render``, ``count_tokens``, ``generate``."""

    def __init__(self, model_dir: str, gpu_memory_utilization: float = 0.85) -> None:
        try:
            from vllm import LLM
        except ImportError as error:
            raise RuntimeError(
                "engine 'vllm' needs vLLM and a GPU: pip install 'trailforge[gpu]' (or use engine 'hf')"
            ) from error
        self.llm = LLM(
            model=model_dir,
            dtype="auto",
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.end_of_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._lock = threading.Lock()  # one engine call at a time; vLLM batches inside it

    def render(self, messages: list[dict]) -> str:
        from tasks.llm.chat import render_prompt

        return render_prompt(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        stop: tuple[str, ...] = (),
    ) -> list[Generation]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                **sampling_kwargs(
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    seed=seed + i,
                    stop=stop,
                    end_of_turn=self.end_of_turn,
                )
            )
            for i in range(len(prompts))
        ]
        started = time.perf_counter()
        with self._lock:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        latency = time.perf_counter() - started
        return [
            Generation(
                text=cut_at_stop(out.outputs[0].text, stop),
                tokens=len(out.outputs[0].token_ids),
                latency_s=latency,
            )
            for out in outputs
        ]
