"""Which engine generates: transformers or vLLM for a local model directory, or a served model.

A model spec names both: ``hf:PATH`` (transformers, any machine), ``vllm:PATH`` (vLLM, GPU) or
``openai:MODEL@URL`` (any OpenAI-compatible endpoint). Policies trained by the pipeline are local
directories, run by the agent config's ``engine``; teachers and judge models may be any spec.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from storage.content_digest import directory_digest
from tasks.llm.hf import load_generator

Engine = Literal["hf", "vllm"]
SPEC_FORMS = "hf:PATH, vllm:PATH or openai:MODEL@URL"


def load_engine(model_dir: str, engine: Engine = "hf"):
    """A generator for ``model_dir``, loaded once per process (see :func:`load_generator`)."""
    if engine == "vllm":
        return _vllm(model_dir)
    return load_generator(model_dir)


@lru_cache(maxsize=1)
def _vllm(model_dir: str):
    from tasks.llm.vllm_backend import VLLMGenerator

    return VLLMGenerator(model_dir)


def check_model_spec(spec: str) -> str:
    """For pydantic validators: the spec if it has a known form, else a ValueError naming them."""
    engine, _, target = spec.partition(":")
    if engine not in ("hf", "vllm", "openai") or not target:
        raise ValueError(f"expected {SPEC_FORMS}")
    if engine == "openai":
        from tasks.llm.openai_api import check_openai_spec

        return check_openai_spec(spec)  # no credentials in a URL that configs log and store
    return spec


def generator_from_spec(spec: str):
    check_model_spec(spec)
    engine, _, target = spec.partition(":")
    if engine == "openai":
        from tasks.llm.openai_api import OpenAIGenerator, parse_openai_spec

        return OpenAIGenerator(parse_openai_spec(spec))
    return load_engine(target, engine)


def precision(engine: Engine = "hf") -> str:
    """The numeric precision a local model runs in on this host: part of what a result depends on.

    transformers picks bf16 or fp32 from the CPU's features (or the GPU's), so the same weights can
    give different tokens on two hosts; ids of model stages carry it, and one id never covers both.
    """
    if engine == "vllm":
        return "vllm-auto"
    from tasks.llm.hardware import default_device, precision_name

    return precision_name(default_device())


def spec_environment(spec: str | None) -> dict[str, Any]:
    """What a model spec's string does not pin: the weights behind a local path.

    A served model (``openai:``) is pinned by its name and endpoint only; what the server behind it
    runs is recorded in the trajectories it produces (their policy field), not checkable here.
    """
    if not spec:
        return {}
    engine, _, target = spec.partition(":")
    if engine in ("hf", "vllm") and Path(target).expanduser().is_dir():
        return {"weights": directory_digest(target), "precision": precision(engine)}
    return {}
