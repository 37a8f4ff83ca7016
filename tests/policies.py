"""Scripted policies for testing the agent loop without a model."""

from __future__ import annotations

import json

from tasks.llm.hf import Generation


class StatePolicy:
    """Replies from reply(messages, seed); records the size of every batch it is asked for."""

    def __init__(self, reply):
        self.reply = reply
        self.batches: list[int] = []

    def render(self, messages):
        return json.dumps(messages)

    def count_tokens(self, text):
        return len(text) // 4

    def generate(self, prompts, *, max_new_tokens, temperature, seed, stop):
        self.batches.append(len(prompts))
        return [Generation(self.reply(json.loads(p), seed), 5, 0.01) for p in prompts]
