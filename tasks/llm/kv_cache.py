"""Multi-turn generation that keeps each conversation's keys and values between calls.

An agent's next prompt is its previous prompt, its generation and a new observation. Encoding the
whole conversation again every turn makes the work grow with the square of the turns (what vLLM's
prefix caching avoids on GPUs). :class:`KVEngine` keeps, per generated sequence, the keys and
values of every token it has seen, and on the next call encodes only what is new.

Matching is on token ids, never on text: a new prompt is tokenised whole, compared with every
cached sequence, and the longest common token prefix is reused. Re-tokenising "prompt + generated
text + new messages" need not reproduce the generated tokens at the boundary (and the agent loop
rewrites actions into tool calls), so a cache is reused exactly as far as the new tokenisation
agrees with it and the rest is encoded again. The next-token logits therefore equal those of a
forward pass over the new prompt, up to floating-point order.

One call runs a batch in two phases over one preallocated buffer of every layer's keys and values
("slots"), with rows right-aligned so that every row's last prompt token sits in the same column:

* prefill: rows are grouped by the length of their new suffix; a group copies each row's reused
  keys and values into its slots and feeds each row's last ``S`` tokens (``S`` the longest suffix
  in the group; shorter rows re-encode a few cached tokens rather than leave a hole), with a 2-D
  attention mask and explicit position ids, so rows of any past length share one forward pass;
* decode: one token per row and step, written into the next column, with our own sampling so
  that each row draws from its own ``torch.Generator``; finished rows are dropped from the batch
  once a quarter of it has finished.

Afterwards each row's keys and values (prompt plus all but the last generated token, the one not
yet fed) become a cached sequence. Cached sequences are evicted least recently used first once
they hold more than a byte budget, and a sequence is dropped as soon as a longer one extends it.
Rows of a batch that share a prefix no cache holds yet (the system prompt on the first turn) get
it encoded once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# A prefix shared by several rows is encoded once when it saves at least this many tokens per row.
MIN_SHARED_PREFIX = 16
# A cached sequence extended by a new one to within this many tokens is dropped: only the few
# boundary tokens that the re-tokenisation changed are lost.
SUPERSEDED_SLACK = 16


class SlotLayer(DynamicLayer):
    """A layer cache that writes into preallocated slots instead of concatenating every step.

    ``DynamicLayer`` grows by ``torch.cat``, which copies the whole cache once per decoded token;
    on CPUs with long conversations that copy costs as much as the attention itself.
    """

    def __init__(self, key_slots: torch.Tensor, value_slots: torch.Tensor, length: int) -> None:
        super().__init__()
        self.key_slots, self.value_slots = key_slots, value_slots
        self.length = length
        self.device = key_slots.device
        self.is_initialized = True
        self.keys, self.values = key_slots[..., :length, :], value_slots[..., :length, :]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        self.key_slots[..., self.length : end, :].copy_(key_states)
        self.value_slots[..., self.length : end, :].copy_(value_states)
        self.length = end
        self.keys, self.values = self.key_slots[..., :end, :], self.value_slots[..., :end, :]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length


@dataclass(eq=False)
class CachedSequence:
    tokens: np.ndarray  # int64 ids whose keys and values are held
    kv: torch.Tensor  # [layers, 2 (keys, values), kv_heads, len(tokens), head_dim]
    last_used: int = 0

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class PrefixStore:
    """Cached sequences, found by longest common token prefix, evicted least recently used first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.sequences: list[CachedSequence] = []
        self._clock = itertools.count(1)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.sequences)

    @property
    def tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sequences)

    def match(self, tokens: np.ndarray) -> tuple[CachedSequence | None, int]:
        best, best_length = None, 0
        for sequence in self.sequences:
            length = common_prefix(sequence.tokens, tokens)
            if length > best_length:
                best, best_length = sequence, length
        if best is not None:
            best.last_used = next(self._clock)
        return best, best_length

    def add(self, sequence: CachedSequence) -> None:
        sequence.last_used = next(self._clock)
        self.sequences.append(sequence)

    def discard(self, sequence: CachedSequence) -> None:
        self.sequences = [s for s in self.sequences if s is not sequence]

    def clear(self) -> None:
        self.sequences = []

    def evict(self) -> None:
        total = self.nbytes
        for sequence in sorted(self.sequences, key=lambda s: s.last_used):
            if total <= self.max_bytes:
                break
            self.discard(sequence)
            total -= sequence.nbytes


@dataclass
class RowOutput:
    token_ids: list[int]  # generated ids, ending with the end-of-turn id when one was generated
    reused_tokens: int  # prompt tokens whose keys and values came from the cache
    logits: torch.Tensor | None = None  # [len(token_ids), vocab] float32, when asked for


@dataclass
class _Row:
    index: int  # position in the caller's list
    tokens: np.ndarray
    source: CachedSequence | None
    reuse: int
    generator: torch.Generator | None
    generated: list[int]
    logits: list[torch.Tensor]
    done: bool = False

    @property
    def suffix(self) -> int:
        return len(self.tokens) - self.reuse


class KVEngine:
    """Batched generation over a :class:`PrefixStore`; see the module docstring for the layout."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        end_of_turn: int,
        pad_id: int,
        max_cache_bytes: int,
        prefill_tokens: int = 4096,
    ) -> None:
        config = model.config.get_text_config(decoder=True)
        self.model, self.tokenizer = model, tokenizer
        self.end_of_turn, self.pad_id = end_of_turn, pad_id
        self.layers = config.num_hidden_layers
        self.kv_heads = config.num_key_value_heads or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.store = PrefixStore(max_cache_bytes)
        self.prefill_tokens = prefill_tokens
        self.prefilled_tokens = 0  # tokens encoded, over the engine's life (for benchmarks and tests)
        self.reused_tokens = 0

    @staticmethod
    def supports(model) -> bool:
        """Only plain full-attention caches can be cut at any token and shifted freely."""
        try:
            layers = DynamicCache(config=model.config).layers
        except Exception:
            return False
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[np.ndarray],
        *,
        max_new_tokens: int,
        temperature: float,
        generators: list[torch.Generator | None],
        stop: tuple[str, ...] = (),
        keep_logits: bool = False,
    ) -> list[RowOutput]:
        """Generate for every prompt in one batch; rows stop at end-of-turn, a stop string or the limit."""
        if any(len(p) == 0 for p in prompts):
            raise ValueError("cannot generate from an empty prompt")
        rows = [
            _Row(i, np.asarray(p, dtype=np.int64), None, 0, g, [], [])
            for i, (p, g) in enumerate(zip(prompts, generators, strict=True))
        ]
        for row in rows:
            row.source, matched = self.store.match(row.tokens)
            row.reuse = min(matched, len(row.tokens) - 1)
        self._share_prefix(rows)
        rows.sort(key=lambda r: r.suffix)
        new_sequences = self._run(rows, max_new_tokens, temperature, stop, keep_logits)
        self._retire_sources(rows, new_sequences)
        self.store.evict()
        out: list[RowOutput | None] = [None] * len(rows)
        for row in rows:
            logits = torch.stack(row.logits) if keep_logits and row.logits else None
            out[row.index] = RowOutput(row.generated, row.reuse, logits)
        return out  # type: ignore[return-value]

    def encode(self, tokens: np.ndarray) -> CachedSequence:
        """Keys and values of ``tokens`` (all of them), reusing what the store holds."""
        source, matched = self.store.match(tokens)
        row = _Row(0, tokens, source, min(matched, len(tokens) - 1), None, [], [])
        slots, mask, width = self._slots([row], extra=0)
        self._prefill([row], slots, mask, width)
        return self._sequence(row, slots, 0, width, fed=0)

    def _share_prefix(self, rows: list[_Row]) -> None:
        if len(rows) < 2:
            return
        first = rows[0].tokens
        shared = min(min(common_prefix(first, r.tokens) for r in rows), min(len(r.tokens) for r in rows) - 1)
        needy = [r for r in rows if r.reuse < shared - MIN_SHARED_PREFIX]
        if len(needy) < 2:
            return
        sequence = self.encode(first[:shared])
        self.store.add(sequence)
        for row in needy:
            row.source, row.reuse = sequence, shared

    def _slots(self, rows: list[_Row], extra: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Zeroed slots (padding must not hold NaNs that a masked score could turn into NaN output)."""
        width = max(len(r.tokens) for r in rows)
        slots = torch.zeros(
            (self.layers, 2, len(rows), self.kv_heads, width + extra, self.head_dim),
            dtype=self.dtype,
            device=self.device,
        )
        mask = torch.zeros((len(rows), width + extra), dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            mask[i, width - len(row.tokens) : width] = 1
        return slots, mask, width

    def _prefill(self, rows: list[_Row], slots: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
        """Encode every row's suffix, in groups of similar suffix length; returns last-position logits."""
        logits = []
        start = 0
        while start < len(rows):
            end = start + 1
            while end < len(rows) and (end + 1 - start) * rows[end].suffix <= self.prefill_tokens:
                end += 1
            logits.append(self._prefill_group(rows, start, end, slots, mask, width))
            start = end
        return torch.cat(logits)

    def _prefill_group(
        self, rows: list[_Row], start: int, end: int, slots: torch.Tensor, mask: torch.Tensor, width: int
    ) -> torch.Tensor:
        group = rows[start:end]
        fed = max(r.suffix for r in group)  # every row feeds its last `fed` tokens
        past = max(max(len(r.tokens) - fed, 0) for r in group)
        first = width - fed - past
        input_ids = torch.full((len(group), fed), self.pad_id, dtype=torch.long)
        positions = torch.ones((len(group), fed), dtype=torch.long)
        for i, row in enumerate(group):
            total = len(row.tokens)
            kept = max(total - fed, 0)  # cached tokens this row takes from its source
            if kept:
                slots[:, :, start + i, :, width - total : width - total + kept] = row.source.kv[
                    :, :, :, :kept
                ]
            n = min(total, fed)
            input_ids[i, fed - n :] = torch.from_numpy(row.tokens[total - n :])
            positions[i, fed - n :] = torch.arange(total - n, total)
        cache = Cache(
            layers=[
                SlotLayer(slots[layer, 0, start:end, :, first:], slots[layer, 1, start:end, :, first:], past)
                for layer in range(self.layers)
            ]
        )
        output = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask[start:end, first:width],
            position_ids=positions.to(self.device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.prefilled_tokens += sum(r.suffix for r in group)
        self.reused_tokens += sum(r.reuse for r in group)
        return output.logits[:, -1].float()

    def _run(
        self,
        rows: list[_Row],
        max_new_tokens: int,
        temperature: float,
        stop: tuple[str, ...],
        keep_logits: bool,
    ) -> list[CachedSequence]:
        slots, mask, width = self._slots(rows, extra=max_new_tokens)
        logits = self._prefill(rows, slots, mask, width)
        lengths = torch.tensor([len(r.tokens) for r in rows], device=self.device)
        batch = list(rows)  # rows still in the slots, in slot order
        sequences: list[CachedSequence] = []
        stop_window = max((len(s) for s in stop), default=0) + 2
        for step in range(max_new_tokens):
            chosen = choose_tokens(
                logits, temperature, [r.generator for r in batch], [not r.done for r in batch]
            )
            for slot, row in enumerate(batch):
                if row.done:
                    continue
                if keep_logits:
                    row.logits.append(logits[slot].clone())
                row.generated.append(chosen[slot])
                row.done = (
                    chosen[slot] == self.end_of_turn
                    or len(row.generated) >= max_new_tokens
                    or _hits_stop(self.tokenizer, row.generated, stop, stop_window)
                )
            finished = sum(r.done for r in batch)
            if finished == len(batch):
                break
            if finished >= max(1, len(batch) // 4):
                keep = [slot for slot, r in enumerate(batch) if not r.done]
                for slot, row in enumerate(batch):
                    if row.done:
                        sequences.append(self._sequence(row, slots, slot, width, fed=len(row.generated) - 1))
                index = torch.tensor(keep, device=self.device)
                slots, mask, lengths = slots.index_select(2, index), mask[index], lengths[index]
                chosen = [chosen[slot] for slot in keep]
                batch = [batch[slot] for slot in keep]
            active = torch.tensor([not r.done for r in batch], device=self.device)
            column = width + step
            mask[:, column] = active.long()
            cache = Cache(
                layers=[SlotLayer(slots[layer, 0], slots[layer, 1], column) for layer in range(self.layers)]
            )
            tokens = torch.tensor(
                [c if not r.done else self.pad_id for c, r in zip(chosen, batch, strict=True)],
                device=self.device,
            )
            output = self.model(
                input_ids=tokens[:, None],
                attention_mask=mask[:, : column + 1],
                position_ids=(lengths + step)[:, None],
                cache=cache,
                use_cache=True,
            )
            logits = output.logits[:, -1].float()
        for slot, row in enumerate(batch):
            sequences.append(self._sequence(row, slots, slot, width, fed=len(row.generated) - 1))
        for sequence in sequences:
            self.store.add(sequence)
        return sequences

    def _sequence(self, row: _Row, slots: torch.Tensor, slot: int, width: int, fed: int) -> CachedSequence:
        fed = max(fed, 0)
        tokens = np.concatenate([row.tokens, np.asarray(row.generated[:fed], dtype=np.int64)])
        kv = slots[:, :, slot, :, width - len(row.tokens) : width + fed].clone()
        return CachedSequence(tokens, kv)

    def _retire_sources(self, rows: list[_Row], new_sequences: list[CachedSequence]) -> None:
        """Drop cached sequences that a new one extends (to within a few boundary tokens)."""
        new = {id(s) for s in new_sequences}
        for source in {id(r.source): r.source for r in rows if r.source is not None}.values():
            if id(source) in new:
                continue
            reused = max(r.reuse for r in rows if r.source is source)
            if reused >= len(source.tokens) - SUPERSEDED_SLACK:
                self.store.discard(source)


def choose_tokens(
    logits: torch.Tensor,
    temperature: float,
    generators: list[torch.Generator | None],
    draw: list[bool],
) -> list[int]:
    """Greedy, or one draw per row (where ``draw``) by inverting the CDF at a uniform from its generator.

    Equivalent to ``torch.multinomial`` per row, but one batched search instead of a call per row
    (which cost 1 ms each over a 49k vocabulary). The CDF is summed in float64 so that the last
    tokens of the vocabulary keep their probabilities; each draw takes exactly one number from its
    row's generator, so a row's samples do not depend on the other rows.
    """
    if temperature <= 0:
        return logits.argmax(-1).tolist()
    cdf = torch.softmax(logits / temperature, dim=-1).cpu().double().cumsum(-1)
    uniforms = torch.tensor(
        [
            torch.rand((), generator=g, dtype=torch.float64).item() if d else 0.0
            for g, d in zip(generators, draw, strict=True)
        ],
        dtype=torch.float64,
    )
    chosen = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None]).squeeze(-1)
    return chosen.clamp(max=cdf.shape[-1] - 1).tolist()


def _hits_stop(tokenizer, generated: list[int], stop: tuple[str, ...], window: int) -> bool:
    """Whether the newest token completed a stop string (earlier tokens were checked before)."""
    if not stop:
        return False
    tail = tokenizer.decode(generated[-window:], skip_special_tokens=True)
    return any(s in tail for s in stop)
