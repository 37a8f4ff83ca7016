"""Batched generation stops each sequence at its own stop string, on a model whose output is known.

The tiny model's weights are rewritten into a bigram machine: every layer adds nothing to the
residual stream, so the next token depends on the current token alone, and the head maps each
scripted token to its successor. Greedy decoding then writes exactly the scripted text, stop string
and all, whatever loop drives the model; a generator that ignored the stop string, stopped a whole
batch at once or counted tokens past the stop would give different text or token counts.
"""

from __future__ import annotations

import pytest
import torch

from tasks.llm.hf import HFGenerator

STOP = ("</search>",)
MAX_NEW_TOKENS = 12
# The last word of each prompt starts its script; what follows the stop string must never appear.
SCRIPTS = {
    "alpha": " red green blue</search> then more words after it",
    "beta": " violet</search> then more words after it",  # same stop, reached three tokens sooner
    "gamma": " one two three one",  # a cycle with no stop string: runs to MAX_NEW_TOKENS
    "delta": " short",  # ends at end-of-turn, as every script but the cycle does
}


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def scripted(generator: HFGenerator) -> dict[int, int]:
    """Rewrite the generator's model so greedy decoding follows SCRIPTS; returns token -> next token."""
    tokenizer, model = generator.tokenizer, generator.model
    successor: dict[int, int] = {}
    for start, script in SCRIPTS.items():
        chain = [_ids(tokenizer, f" {start}")[-1], *_ids(tokenizer, script)]
        if script.endswith(" one"):
            chain[-1] = chain[1]  # close the cycle: ' three' -> ' one'
        else:
            chain.append(generator.end_of_turn)
        for current, following in zip(chain, chain[1:], strict=False):
            assert successor.setdefault(current, following) == following, "scripts must agree"
    hidden = model.config.hidden_size
    assert len(successor) <= hidden
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        embeddings = model.model.embed_tokens.weight
        head = torch.zeros(embeddings.shape[0], hidden, dtype=embeddings.dtype, device=embeddings.device)
        for slot, (current, following) in enumerate(successor.items()):
            embeddings[current] = 0.0
            embeddings[current, slot] = 1.0
            head[following, slot] = 1.0
        model.lm_head.weight = torch.nn.Parameter(head)  # untied: the head is no longer the embedding
    return successor


@pytest.fixture(scope="module")
def generator(tiny_model) -> HFGenerator:
    generator = HFGenerator(tiny_model.uri, device="cpu", batch_size=2)
    scripted(generator)
    return generator


def expected(generator: HFGenerator, start: str) -> tuple[str, int]:
    """The text up to and including the stop string (or end-of-turn, or the token limit), and its tokens."""
    tokenizer = generator.tokenizer
    ids = _ids(tokenizer, SCRIPTS[start])
    if start == "gamma":
        cycle = ids[:-1]
        ids = (cycle * MAX_NEW_TOKENS)[:MAX_NEW_TOKENS]
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n])
        if text.endswith(STOP[0]):
            return text, n
    return tokenizer.decode(ids), len(ids)


def test_each_sequence_of_a_batch_stops_at_its_own_stop_string(generator):
    # Prompts of different lengths, so rows are left-padded, in more than one batch of two.
    starts = ["alpha", "gamma", "beta", "delta", "alpha"]
    prompts = [f"{'Question ' * (i + 1)}{start}" for i, start in enumerate(starts)]
    out = generator.generate(prompts, max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=STOP)

    for start, generation in zip(starts, out, strict=True):
        text, tokens = expected(generator, start)
        assert (generation.text, generation.tokens) == (text, tokens), start
    by_start = dict(zip(starts, out, strict=False))
    assert by_start["alpha"].text == " red green blue</search>" and by_start["alpha"].tokens == 6
    assert by_start["beta"].text == " violet</search>" and by_start["beta"].tokens == 4
    assert by_start["gamma"].tokens == MAX_NEW_TOKENS and "</search>" not in by_start["gamma"].text
    assert by_start["delta"].text == " short" and by_start["delta"].tokens == 1
    assert all("then" not in g.text for g in out)  # nothing past a stop string is returned

    # A sequence's output does not depend on what shares its batch.
    for prompt, generation in zip(prompts, out, strict=True):
        (alone,) = generator.generate([prompt], max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=STOP)
        assert (alone.text, alone.tokens) == (generation.text, generation.tokens)


def test_without_the_stop_string_the_same_sequences_run_on(generator):
    (alpha,) = generator.generate(["Question alpha"], max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)
    assert alpha.text.startswith(" red green blue</search> then more")  # the script goes on past it
