"""KV reuse across turns, per-prompt sampling seeds, and the choice of bf16 or fp32.

The engine must give what a plain forward pass over the whole conversation gives: the tiny model in
fp32 is compared logit by logit with one, and token by token with ``model.generate``.
"""

from __future__ import annotations

import sys

import pytest
import torch

from tasks.agent.protocol import STOP_STRINGS, assistant_message, initial_messages, parse_turn
from tasks.llm import hardware
from tasks.llm.hf import HFGenerator
from tasks.llm.kv_cache import choose_tokens

QUESTIONS = [
    "In which city was the founder of Velmora Instruments born?",
    "Who directed the film that won the Aster Prize in 1987?",
    "Which country is the birthplace of the author of The Quiet Harbour in?",
]
# Observations of different lengths, so that rows of one batch have different pasts and suffixes.
OBSERVATIONS = [
    "Doc 1 (Velmora Instruments): founded by Ilse Marek in Tarnow. " * 6,
    "Doc 7 (Aster Prize): awarded to The Long Field, directed by Oren Hale. " * 2,
    "Doc 3 (The Quiet Harbour): a novel by Petra Lind, born in Solvik. " * 9,
]


@pytest.fixture(scope="module")
def generator(tiny_model) -> HFGenerator:
    return HFGenerator(tiny_model.uri, device="cpu", precision="fp32")


def _ids(generator: HFGenerator, text: str) -> torch.Tensor:
    return torch.tensor(generator.tokenizer(text, add_special_tokens=False).input_ids)


@torch.inference_mode()
def _reference_logits(generator: HFGenerator, prompt: str, generated: list[int]) -> torch.Tensor:
    """Logits of a plain forward pass over prompt + generated tokens, at every generated position."""
    prompt_ids = _ids(generator, prompt)
    full = torch.cat([prompt_ids, torch.tensor(generated[:-1], dtype=torch.long)])
    logits = generator.model(input_ids=full[None]).logits[0].float()
    return logits[len(prompt_ids) - 1 :]


def _next_messages(messages: list[dict], text: str, observation: str) -> list[dict]:
    """What the agent loop appends: the parsed turn as a message, then a tool result."""
    turn = parse_turn(text)
    reply = assistant_message(turn, text.strip())  # stripping changes the tokens at the boundary
    return [*messages, reply, {"role": "tool", "name": "search", "content": observation}]


@pytest.mark.parametrize(
    ("temperature", "stop", "prefill_tokens"),
    [
        # The agent's stops, greedy: tokens also compared with model.generate; one prefill group.
        (0.0, STOP_STRINGS, 4096),
        # Sampled random text hits "u" at different steps, so finished rows leave the batch
        # mid-turn; a small prefill budget encodes the rows in several groups.
        (1.0, ("u",), 24),
    ],
    ids=["greedy-agent-stops", "sampled-early-stops-several-prefill-groups"],
)
def test_three_turns_with_kv_reuse_match_a_full_forward_pass(tiny_model, temperature, stop, prefill_tokens):
    generator = HFGenerator(tiny_model.uri, device="cpu", precision="fp32")
    generator.engine.prefill_tokens = prefill_tokens
    conversations = [initial_messages(q) for q in QUESTIONS]
    previous: list[int] = []
    lengths: set[int] = set()
    for turn in range(3):
        prompts = [generator.render(m) for m in conversations]
        kwargs = {"max_new_tokens": 12, "temperature": temperature, "seed": turn, "stop": stop}
        out = generator.generate_tokens(prompts, **kwargs, keep_logits=True)
        plain = generator.generate_tokens(prompts, **kwargs, reuse_kv=False) if temperature == 0 else out
        for i, (prompt, generation) in enumerate(zip(prompts, out, strict=True)):
            assert generation.token_ids == plain[i].token_ids, (turn, i)
            assert generation.text == plain[i].text
            expected = _reference_logits(generator, prompt, generation.token_ids)
            assert generation.logits.shape == expected.shape
            assert (generation.logits - expected).abs().max().item() < 1e-4, (turn, i)
            if turn:
                # The earlier turn's prompt is not encoded again (a token or two at its end may be).
                assert generation.reused_tokens >= previous[i] - 2, (turn, i)
            lengths.add(len(generation.token_ids))
        previous = [len(_ids(generator, p)) for p in prompts]
        conversations = [
            _next_messages(m, g.text, OBSERVATIONS[i])
            for i, (m, g) in enumerate(zip(conversations, out, strict=True))
        ]
    if temperature > 0:
        assert len(lengths) > 1  # rows did finish at different steps


def test_a_shared_system_prompt_is_encoded_once(tiny_model):
    fresh = HFGenerator(tiny_model.uri, device="cpu", precision="fp32")
    prompts = [fresh.render(initial_messages(q)) for q in QUESTIONS]
    fresh.generate_tokens(prompts, max_new_tokens=2)
    lengths = [len(_ids(fresh, p)) for p in prompts]
    shared = len(_ids(fresh, fresh.render(initial_messages("")))) - 8  # the system prompt and more
    assert fresh.engine.prefilled_tokens <= sum(lengths) - (len(prompts) - 1) * shared


def test_a_sample_does_not_depend_on_its_batch(generator):
    prompts = [generator.render(initial_messages(q)) for q in QUESTIONS]
    kwargs = {"max_new_tokens": 8, "temperature": 1.0, "seed": 5}
    batch = generator.generate_tokens([*prompts, prompts[1]], **kwargs)
    (alone,) = generator.generate_tokens([prompts[1]], **kwargs)
    assert alone.token_ids == batch[1].token_ids
    # A second copy of a prompt in one call is a second sample, not a duplicate of the first.
    assert batch[3].token_ids != batch[1].token_ids
    (reseeded,) = generator.generate_tokens([prompts[1]], **{**kwargs, "seed": 6})
    assert reseeded.token_ids != alone.token_ids


def test_sampling_draws_from_the_tempered_softmax():
    logits = torch.tensor([[2.0, -float("inf"), 3.0, 1.0]])
    temperature = 0.5
    expected = torch.softmax(logits / temperature, dim=-1)[0]
    generator = torch.Generator().manual_seed(0)
    draws = [choose_tokens(logits, temperature, [generator], [True])[0] for _ in range(20_000)]
    frequencies = torch.bincount(torch.tensor(draws), minlength=4) / len(draws)
    assert frequencies[1] == 0  # a token of probability zero is never drawn
    assert torch.allclose(frequencies, expected, atol=0.01)


def test_the_cache_drops_superseded_sequences_and_keeps_its_budget(tiny_model):
    per_token = 2 * 2 * 2 * 16 * 4  # layers, keys and values, kv heads, head size, fp32 bytes
    budget = 1800 * per_token
    small = HFGenerator(tiny_model.uri, device="cpu", precision="fp32", kv_cache_bytes=budget)
    conversations = [initial_messages(q) for q in QUESTIONS]
    for _ in range(2):
        prompts = [small.render(m) for m in conversations]
        out = small.generate(prompts, max_new_tokens=6)
        conversations = [
            _next_messages(m, g.text, OBSERVATIONS[i])
            for i, (m, g) in enumerate(zip(conversations, out, strict=True))
        ]
        # one cached sequence per conversation: the previous turn's was extended, so dropped
        assert len(small.engine.store.sequences) == len(QUESTIONS)
        assert small.engine.store.nbytes <= budget
    long_prompts = [small.render([*m, {"role": "user", "content": "more " * 400}]) for m in conversations]
    small.generate(long_prompts, max_new_tokens=2)
    assert 0 < small.engine.store.nbytes <= budget


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n", True),  # Zen 4
        ("flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n", True),  # Sapphire Rapids
        ("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n", False),  # VNNI alone is int8 only
        ("flags\t\t: fpu avx512bw avx512_bf16x\n", False),  # a name that merely contains the flag
        ("model name\t: avx512_bf16 in a model name\n", False),
        ("", False),
    ],
    ids=["zen4", "sapphire-rapids", "vnni-only", "similar-name", "not-a-flags-line", "no-cpuinfo"],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert hardware.has_native_bf16(hardware.cpu_flags(cpuinfo)) is native


def test_precision_follows_the_cpu_unless_overridden(monkeypatch):
    monkeypatch.delenv(hardware.PRECISION_ENV, raising=False)
    monkeypatch.setattr(hardware, "_this_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert hardware.precision_name("cpu") == "bf16" and hardware.preferred_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(hardware, "_this_cpu_flags", lambda: frozenset({"avx512f", "avx2"}))
    assert hardware.precision_name("cpu") == "fp32" and hardware.preferred_dtype("cpu") == torch.float32
    monkeypatch.setenv(hardware.PRECISION_ENV, "bf16")
    assert hardware.precision_name("cpu") == "bf16"
    monkeypatch.setenv(hardware.PRECISION_ENV, "fp32")
    monkeypatch.setattr(hardware, "_this_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert hardware.preferred_dtype("cpu") == torch.float32
    monkeypatch.setenv(hardware.PRECISION_ENV, "fp8")
    with pytest.raises(ValueError, match="TRAILFORGE_PRECISION"):
        hardware.precision_name("cpu")


@pytest.mark.parametrize(
    ("free_gib", "expected_gib"),
    [(24.0, 6.0), (64.0, 8.0), (2.0, 1.0), (None, 2.0)],
    ids=["quarter-of-free", "capped", "floored", "unknown"],
)
def test_kv_budget_is_a_bounded_share_of_free_memory(monkeypatch, free_gib, expected_gib):
    free = None if free_gib is None else int(free_gib * 2**30)
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda device: free)
    assert hardware.kv_cache_budget("cpu") == int(expected_gib * 2**30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sysconf reports free pages on Linux")
def test_free_host_memory_is_read_on_linux():
    free = hardware.available_memory_bytes("cpu")
    assert free is not None and 2**20 < free < 2**50


def test_bf16_training_loss_matches_fp32(tiny_model, tmp_path, monkeypatch):
    """bf16 mixed precision changes a batch's loss by rounding only: within 0.1% of fp32's."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from tasks.train.sft import _trainer_class, training_in_bf16

    monkeypatch.setenv(hardware.PRECISION_ENV, "fp32")
    assert not training_in_bf16("cpu")
    monkeypatch.setenv(hardware.PRECISION_ENV, "bf16")
    assert training_in_bf16("cpu")

    conversations = []
    for question, observation in zip(QUESTIONS, OBSERVATIONS, strict=True):
        search = assistant_message(parse_turn(f"<think>look it up</think><search>{question}</search>"), "")
        answer = {"role": "assistant", "content": "<think>found it</think><answer>Tarnow</answer>"}
        conversations.append(
            [
                *initial_messages(question),
                search,
                {"role": "tool", "name": "search", "content": observation},
                answer,
            ]
        )
    losses = {}
    for bf16 in (False, True):
        args = SFTConfig(
            output_dir=str(tmp_path / str(bf16)),
            per_device_train_batch_size=len(conversations),
            max_length=2048,
            assistant_only_loss=True,
            use_cpu=True,
            bf16=bf16,
            activation_checkpointing=False,
            report_to="none",
            dataloader_num_workers=0,
        )
        trainer = _trainer_class()(
            model=AutoModelForCausalLM.from_pretrained(tiny_model.uri),
            args=args,
            train_dataset=Dataset.from_list([{"messages": m} for m in conversations]),
            processing_class=AutoTokenizer.from_pretrained(tiny_model.uri),
        )
        batch = next(iter(trainer.get_train_dataloader()))
        with torch.no_grad():
            losses[bf16] = trainer.compute_loss(trainer.model, batch).item()
    assert losses[True] != losses[False]  # bf16 really ran: its rounding shows
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
