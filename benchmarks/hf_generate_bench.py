"""Throughput of the ``hf:`` backend's batched generation, per batch size, on CPU or GPU.

Generation length is fixed (no early stop), so tokens/s measures the engine, not the model's
habits: a model directory with real weights and one built from the same config with random
weights give the same figure. ``--random-from DIR`` builds the latter from DIR's config and
tokenizer, which lets the benchmark run where the weights cannot travel.
Prints one JSON line last: ``tok_s`` per batch size, device and dtype.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.llm.hf import HFGenerator  # noqa: E402

PROMPT = (
    "<|im_start|>system\nAnswer the question. Search with <search>query</search>.<|im_end|>\n"
    "<|im_start|>user\nIn which city was the founder of Velmora Instruments born? (variant {i})<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def random_model_dir(source: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = Path(tempfile.mkdtemp(prefix="hf-bench-"))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source)).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def measure(generator: HFGenerator, batch: int, new_tokens: int, repeats: int) -> float:
    prompts = [PROMPT.format(i=i) for i in range(batch)]
    generator.batch_size = batch
    generator.generate(prompts[:2], max_new_tokens=4)  # warm-up: kernels, allocator
    # min_new_tokens keeps every sequence generating for exactly new_tokens steps.
    generator.model.generation_config.min_new_tokens = new_tokens
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        out = generator.generate(prompts, max_new_tokens=new_tokens)
        elapsed = time.perf_counter() - started
        best = max(best, sum(g.tokens for g in out) / elapsed)
    generator.model.generation_config.min_new_tokens = None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="a transformers model directory")
    source.add_argument("--random-from", type=Path, help="config + tokenizer directory; weights are random")
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    model_dir = args.model_dir or random_model_dir(args.random_from)
    generator = HFGenerator(str(model_dir))
    tok_s = {}
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        tok_s[str(batch)] = round(measure(generator, batch, args.new_tokens, args.repeats), 1)
        print(f"batch {batch}: {tok_s[str(batch)]} tok/s", flush=True)
    print(
        json.dumps(
            {
                "device": generator.device,
                "dtype": str(generator.dtype).removeprefix("torch."),
                "new_tokens": args.new_tokens,
                "weights": "random" if args.random_from else "real",
                "tok_s": tok_s,
            }
        )
    )


if __name__ == "__main__":
    main()
