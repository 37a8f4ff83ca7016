"""The ``hf:`` backend: batched generation with transformers, left padding and stop strings.

All prompts of a call are generated together in batches (sorted by length to waste little on
padding); each sequence stops at its own stop string or end-of-turn while the rest go on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import torch

from tasks.llm.hardware import default_device, preferred_dtype


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    latency_s: float
    error: str | None = None  # set when no completion could be had (a served backend gave up)


class HFGenerator:
    def __init__(self, model_dir: str, device: str | None = None, batch_size: int = 32) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or default_device()
        self.dtype = preferred_dtype(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self.dtype).to(self.device).eval()
        self.batch_size = batch_size
        self.end_of_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._lock = threading.Lock()  # one generation at a time per loaded model

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        stop: tuple[str, ...] = (),
    ) -> list[Generation]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        with self._lock:
            torch.manual_seed(seed)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                for i, generation in zip(
                    batch,
                    self._generate_batch([prompts[i] for i in batch], max_new_tokens, temperature, stop),
                    strict=True,
                ):
                    results[i] = generation
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, prompts: list[str], max_new_tokens: int, temperature: float, stop: tuple[str, ...]
    ) -> list[Generation]:
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False}
        )
        started = time.perf_counter()
        output = self.model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            eos_token_id=self.end_of_turn,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(stop) or None,
            tokenizer=self.tokenizer,
            **sampling,
        )
        latency = time.perf_counter() - started
        new_tokens = output[:, encoded.input_ids.shape[1] :]
        generations = []
        for row in new_tokens:
            keep = row[row != self.tokenizer.pad_token_id]
            count = int((keep != self.end_of_turn).sum())
            text = cut_at_stop(self.tokenizer.decode(keep, skip_special_tokens=True), stop)
            generations.append(Generation(text=text, tokens=count, latency_s=latency))
        return generations


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Text up to and including the earliest stop string (generation may run a token past it)."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text


_loading = threading.Lock()


def load_generator(model_dir: str) -> HFGenerator:
    """Models are loaded once per process and shared by the stages that use them.

    Loading is serialised: transformers initialises weights under process-wide context managers, so
    two threads loading at once (parallel shards on the thread pool) can leave one with empty
    "meta" tensors.
    """
    with _loading:
        return _cached_generator(model_dir)


@lru_cache(maxsize=2)
def _cached_generator(model_dir: str) -> HFGenerator:
    return HFGenerator(model_dir)
