"""A small OpenAI-compatible chat server over the ``hf:`` backend.

It lets the ``openai:`` backend, or any OpenAI client, talk to a local model: for trying a served
setup on one machine and for testing the client against a real HTTP server. Like vLLM's server, it
leaves the matched stop string out of the returned content. For serving at scale use vLLM.
"""

from __future__ import annotations

import time
import uuid

from fastapi import FastAPI
from pydantic import BaseModel, Field

from tasks.llm.hf import HFGenerator


class ChatRequest(BaseModel):
    model: str
    messages: list[dict]
    max_tokens: int = Field(256, ge=1, le=32_768)
    temperature: float = Field(0.0, ge=0, le=5)
    seed: int = 0
    stop: list[str] | None = None


def create_app(generator: HFGenerator, model_name: str) -> FastAPI:
    app = FastAPI(title="Trailforge OpenAI-compatible server")

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest) -> dict:
        stop = tuple(request.stop or ())
        (generation,) = generator.generate(
            [generator.render(request.messages)],
            max_new_tokens=request.max_tokens,
            temperature=request.temperature,
            seed=request.seed,
            stop=stop,
        )
        text, finish, matched = generation.text, "length", None
        for s in stop:
            if text.endswith(s):
                text, finish, matched = text[: -len(s)], "stop", s
        if finish == "length" and generation.tokens < request.max_tokens:
            finish = "stop"  # ended at end-of-turn
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "stop_reason": matched,  # as vLLM reports it
                }
            ],
            "usage": {"completion_tokens": generation.tokens},
        }

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    return app
