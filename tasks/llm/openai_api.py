"""The ``openai:`` backend: any OpenAI-compatible chat endpoint (a vLLM server, a hosted API).

Requests run concurrently under a limit, each with its own timeout. Only what a retry can fix is
retried — 429, 5xx, timeouts and dropped connections — with exponential backoff and jitter (a
``Retry-After`` header is honoured); any other error fails that prompt at once. Every prompt gets
exactly one result in its position: a completion, or a ``Generation`` whose ``error`` says why it
failed, which the agent loop records in the failures table. The API key comes from an environment
variable and is never logged or stored; a spec or base URL carrying credentials (``user:key@``,
``?api_key=``) is refused, since specs are part of configs, which are logged and stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.credentials import refuse_credentials
from tasks.llm.hf import Generation, cut_at_stop
from tasks.retry import RETRYABLE_STATUS, backoff_delay


class OpenAIConfig(BaseModel):
    # An error must not echo a refused URL: it would land in the logs the refusal keeps it out of.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    model: str = Field(min_length=1, description="Model name the server knows.")
    base_url: str = Field("https://api.openai.com/v1", description="Endpoint root, ending in /v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    max_concurrency: int = Field(16, ge=1, le=4096, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(6, ge=0, le=100)
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles per attempt, with jitter.")
    max_backoff_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _no_credentials_in_the_url(self) -> OpenAIConfig:
        refuse_credentials(self.base_url, f"put the API key in ${self.api_key_env} instead")
        return self


def parse_openai_spec(spec: str) -> OpenAIConfig:
    """``openai:MODEL`` or ``openai:MODEL@BASE_URL``; the URL may also come from OPENAI_BASE_URL."""
    name = spec.removeprefix("openai:")
    model, _, base_url = name.partition("@")
    base_url = base_url or os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    return OpenAIConfig(model=model, base_url=base_url)


def check_openai_spec(spec: str) -> str:
    """For config validators: the spec, if it parses and its URL carries no credentials."""
    model, _, base_url = spec.removeprefix("openai:").partition("@")
    if not model:
        raise ValueError("an openai: spec names a model: openai:MODEL or openai:MODEL@URL")
    if base_url:
        refuse_credentials(base_url, "put the API key in $OPENAI_API_KEY instead")
    return spec


class OpenAIGenerator:
    """The agent loop's policy interface over chat completions; a prompt is the messages' JSON."""

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        self.requests_sent = 0  # attempts, retries included: what a quota sees

    def render(self, messages: list[dict]) -> str:
        return json.dumps(messages)

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not at hand; four characters per token is the usual estimate.
        return len(text) // 4

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        stop: tuple[str, ...] = (),
    ) -> list[Generation]:
        return asyncio.run(self._generate_all(prompts, max_new_tokens, temperature, seed, stop))

    async def _generate_all(
        self, prompts: list[str], max_new_tokens: int, temperature: float, seed: int, stop: tuple[str, ...]
    ) -> list[Generation]:
        limit = asyncio.Semaphore(self.config.max_concurrency)
        headers = {}
        api_key = os.environ.get(self.config.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        async with httpx.AsyncClient(
            base_url=self.config.base_url.rstrip("/"),
            headers=headers,
            timeout=self.config.timeout_s,
            limits=httpx.Limits(max_connections=self.config.max_concurrency),
        ) as client:

            async def one(index: int, prompt: str) -> Generation:
                body = {
                    "model": self.config.model,
                    "messages": json.loads(prompt),
                    "max_tokens": max_new_tokens,
                    "temperature": temperature,
                    "seed": seed + index,
                    **({"stop": list(stop)} if stop else {}),
                }
                async with limit:
                    return await self._complete(client, body, stop)

            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))

    async def _complete(self, client: httpx.AsyncClient, body: dict, stop: tuple[str, ...]) -> Generation:
        started = time.perf_counter()
        problem = ""
        for attempt in range(self.config.max_retries + 1):
            delay = backoff_delay(attempt, self.config.backoff_s, self.config.max_backoff_s)
            self.requests_sent += 1
            try:
                response = await client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return _generation(response.json(), stop, time.perf_counter() - started)
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRYABLE_STATUS:
                    break
                retry_after = response.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    delay = min(self.config.max_backoff_s, float(retry_after))
            if attempt < self.config.max_retries:
                await asyncio.sleep(delay)
        return Generation(text="", tokens=0, latency_s=time.perf_counter() - started, error=problem)


def _generation(payload: dict, stop: tuple[str, ...], latency_s: float) -> Generation:
    choice = payload["choices"][0]
    text = choice["message"].get("content") or ""
    # Servers drop the matched stop string; the agent protocol needs its closing tag back. vLLM
    # names it in stop_reason; elsewhere it is the closing tag of the last tag left open.
    if choice.get("finish_reason") == "stop" and stop and not any(text.endswith(s) for s in stop):
        matched = choice.get("stop_reason")
        text += matched if isinstance(matched, str) and matched in stop else _closing_tag(text, stop)
    tokens = int(payload.get("usage", {}).get("completion_tokens", 0))
    return Generation(text=cut_at_stop(text, stop), tokens=tokens, latency_s=latency_s)


def _closing_tag(text: str, stop: tuple[str, ...]) -> str:
    """The stop string whose opening tag is the last one left open in text."""
    open_positions = {s: text.rfind(s.replace("</", "<", 1)) for s in stop if s.startswith("</")}
    best = max(open_positions, key=open_positions.get, default="")
    return best if best and open_positions[best] >= 0 else ""
