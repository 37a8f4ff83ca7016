"""The ``hf:`` backend: batched generation with transformers, stop strings, and KV reuse across turns.

All prompts of a call are generated together in batches (sorted by length to waste little on
padding); each sequence stops at its own stop string or end-of-turn while the rest go on. The agent
loop sends every trajectory's whole conversation each turn; :class:`~tasks.llm.kv_cache.KVEngine`
recognises the part it has already encoded (by token ids) and encodes only the rest. Models whose
caches cannot be cut at any token (sliding-window or recurrent layers) use ``model.generate``.

Sampling seeds are per prompt: each prompt draws from its own generator, seeded from the call's
seed, the prompt's text and how many identical prompts came before it in the call. A prompt
therefore gets the same sample alone or in any batch, and K copies of one prompt (K samples of a
task) still get K different samples.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from tasks.llm.chat import render_prompt
from tasks.llm.hardware import DTYPES, default_device, kv_cache_budget, precision_name
from tasks.llm.kv_cache import KVEngine

ENCODED_PROMPTS = 1024  # token ids of recent prompts kept for count_tokens followed by generate


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    latency_s: float
    error: str | None = None  # set when no completion could be had (a served backend gave up)


@dataclass
class TokenGeneration:
    """A generation with its token ids (and per-token logits when asked for), for tests and benchmarks."""

    text: str
    token_ids: list[int]
    tokens: int
    latency_s: float
    reused_tokens: int = 0
    logits: torch.Tensor | None = None


class HFGenerator:
    def __init__(
        self,
        model_dir: str,
        device: str | None = None,
        batch_size: int = 32,
        *,
        precision: str | None = None,
        reuse_kv: bool = True,
        kv_cache_bytes: int | None = None,
    ) -> None:
        """``precision`` (fp32, bf16, fp16) defaults to what runs natively here; ``reuse_kv=False``
        re-encodes every prompt with ``model.generate``. ``kv_cache_bytes`` (keys and values kept
        between turns; SmolLM2-135M holds 23 KB per token in bf16) defaults to a quarter of the
        device's free memory, between 1 and 8 GiB (:func:`~tasks.llm.hardware.kv_cache_budget`)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or default_device()
        self.precision = precision or precision_name(self.device)
        if self.precision not in DTYPES:
            raise ValueError(f"precision {self.precision!r}: expected one of {', '.join(DTYPES)}")
        self.dtype = DTYPES[self.precision]
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self.dtype).to(self.device).eval()
        self.batch_size = batch_size
        self.end_of_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.engine = (
            KVEngine(
                self.model,
                self.tokenizer,
                end_of_turn=self.end_of_turn,
                pad_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0,
                max_cache_bytes=kv_cache_bytes or kv_cache_budget(self.device),
            )
            if reuse_kv and KVEngine.supports(self.model)
            else None
        )
        # The loop counts a prompt's tokens just before generating from it: tokenise once.
        self._encoded: OrderedDict[str, np.ndarray] = OrderedDict()
        self._encoded_lock = threading.Lock()
        self._lock = threading.Lock()  # one generation at a time per loaded model

    def render(self, messages: list[dict]) -> str:
        return render_prompt(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def _encode(self, text: str) -> np.ndarray:
        with self._encoded_lock:
            ids = self._encoded.get(text)
        if ids is None:
            ids = np.asarray(self.tokenizer(text, add_special_tokens=False).input_ids, dtype=np.int64)
            with self._encoded_lock:
                self._encoded[text] = ids
                while len(self._encoded) > ENCODED_PROMPTS:
                    self._encoded.popitem(last=False)
        return ids

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        stop: tuple[str, ...] = (),
    ) -> list[Generation]:
        return [
            Generation(text=g.text, tokens=g.tokens, latency_s=g.latency_s)
            for g in self.generate_tokens(
                prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, stop=stop
            )
        ]

    @torch.inference_mode()
    def generate_tokens(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        stop: tuple[str, ...] = (),
        keep_logits: bool = False,
        reuse_kv: bool = True,
    ) -> list[TokenGeneration]:
        """:meth:`generate` with token ids (and logits with ``keep_logits``, KV reuse only);
        ``reuse_kv=False`` runs plain ``model.generate`` on the whole prompts."""
        use_engine = reuse_kv and self.engine is not None
        with self._lock:
            encoded = [self._encode(p) for p in prompts]
            order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
            if use_engine:
                generators = prompt_generators(prompts, seed) if temperature > 0 else [None] * len(prompts)
            else:
                torch.manual_seed(seed)
            results: list[TokenGeneration | None] = [None] * len(prompts)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                if use_engine:
                    generations = self._engine_batch(
                        [encoded[i] for i in batch],
                        [generators[i] for i in batch],
                        max_new_tokens,
                        temperature,
                        stop,
                        keep_logits,
                    )
                else:
                    generations = self._generate_batch(
                        [prompts[i] for i in batch], max_new_tokens, temperature, stop
                    )
                for i, generation in zip(batch, generations, strict=True):
                    results[i] = generation
        return results  # type: ignore[return-value]

    def _engine_batch(
        self,
        prompts: list[np.ndarray],
        generators: list[torch.Generator | None],
        max_new_tokens: int,
        temperature: float,
        stop: tuple[str, ...],
        keep_logits: bool,
    ) -> list[TokenGeneration]:
        started = time.perf_counter()
        rows = self.engine.generate(
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            generators=generators,
            stop=stop,
            keep_logits=keep_logits,
        )
        latency = time.perf_counter() - started
        return [
            self._finish(row.token_ids, latency, stop, reused=row.reused_tokens, logits=row.logits)
            for row in rows
        ]

    def _generate_batch(
        self, prompts: list[str], max_new_tokens: int, temperature: float, stop: tuple[str, ...]
    ) -> list[TokenGeneration]:
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
        pad = self.tokenizer.pad_token_id
        return [self._finish(row[row != pad].tolist(), latency, stop) for row in new_tokens]

    def _finish(
        self,
        token_ids: list[int],
        latency: float,
        stop: tuple[str, ...],
        reused: int = 0,
        logits: torch.Tensor | None = None,
    ) -> TokenGeneration:
        text = cut_at_stop(self.tokenizer.decode(token_ids, skip_special_tokens=True), stop)
        count = sum(t not in (self.end_of_turn, self.tokenizer.pad_token_id) for t in token_ids)
        return TokenGeneration(text, token_ids, count, latency, reused, logits)


def prompt_generators(prompts: list[str], seed: int) -> list[torch.Generator]:
    """One random stream per prompt; the k-th copy of a prompt in a call gets copy number k."""
    seen: dict[str, int] = {}
    generators = []
    for prompt in prompts:
        seen[prompt] = seen.get(prompt, -1) + 1
        generators.append(prompt_generator(seed, prompt, seen[prompt]))
    return generators


def prompt_generator(seed: int, prompt: str, occurrence: int = 0) -> torch.Generator:
    """The random stream of one prompt: depends on the seed, the prompt and its copy number only."""
    digest = hashlib.sha256(f"{seed}\x00{occurrence}\x00{prompt}".encode()).digest()
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return generator


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Text up to and including the earliest stop string (generation may run a token past it)."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text


_loading = threading.Lock()


def load_generator(model_dir: str) -> HFGenerator:
    """Models are loaded once per process and shared by the stages that use them.

    Loading is serialised: transformers initialises weights under process-wide context managers, so
    two threads loading at once (parallel shards on the thread pool) can leave one with empty
    "meta" tensors. The cache key includes the directory's ``_meta.json`` stamp, so an artifact
    rebuilt under its id (``trailforge retry``) is loaded again rather than served from memory.
    """
    with _loading:
        return _cached_generator(model_dir, _stamp(model_dir))


def _stamp(model_dir: str) -> int:
    meta = Path(model_dir) / "_meta.json"
    return meta.stat().st_mtime_ns if meta.exists() else 0


@lru_cache(maxsize=2)
def _cached_generator(model_dir: str, stamp: int) -> HFGenerator:
    return HFGenerator(model_dir)
