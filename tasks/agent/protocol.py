"""The ReAct protocol in Search-R1's tags, plus ``open`` and ``calculate``.

A turn is ``<think>...</think>`` followed by one action tag. Generation stops at the action's
closing tag; the tool's result comes back as the next message inside ``<information>``. The same
chat template renders prompts at collection time and targets at training time, so what the policy
is trained on is exactly what it will be prompted with.
"""

from __future__ import annotations

import hashlib
import json

from tasks.search.tools import TOOLS_SCHEMA
from tasks.turns import ACTIONS, ARGUMENT_NAMES, ParsedTurn, parse_turn

__all__ = ["ACTIONS", "ARGUMENT_NAMES", "ParsedTurn", "parse_turn"]

STOP_STRINGS = tuple(f"</{a}>" for a in ACTIONS)

SYSTEM_PROMPT = (
    "You answer questions by searching a collection of documents. "
    "Think step by step inside <think>...</think>, then take exactly one action:\n"
    "<search>query</search> searches the collection; results come back inside <information>.\n"
    "<open>doc_id</open> shows a whole document.\n"
    "<calculate>expression</calculate> evaluates arithmetic.\n"
    "<answer>short answer</answer> gives your final answer.\n"
    "Search for each fact you need; answer with the exact name from the documents."
)

INVALID_ACTION_FEEDBACK = (
    "Your reply had no valid action. Think inside <think>...</think>, then write exactly one of "
    "<search>query</search>, <open>doc_id</open>, <calculate>expression</calculate> or <answer>answer</answer>."
)


def assistant_message(turn: ParsedTurn, raw: str) -> dict:
    """Chat message for a turn: tool actions become ``tool_calls``; answers and invalid text stay content."""
    if turn.action in ARGUMENT_NAMES:
        return {
            "role": "assistant",
            "content": turn.prefix,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {
                        "name": turn.action,
                        "arguments": {ARGUMENT_NAMES[turn.action]: turn.argument},
                    },
                }
            ],
        }
    return {"role": "assistant", "content": raw}


def initial_messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Question: {question}"},
    ]


def protocol_digest() -> str:
    """Digest of what the agent is told: the system prompt and the tools' schema."""
    payload = json.dumps({"system": SYSTEM_PROMPT, "tools": TOOLS_SCHEMA}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def template_digest(chat_template: str | None) -> str | None:
    """Digest of a chat template; the same conversation renders alike exactly when these agree."""
    return None if chat_template is None else hashlib.sha256(chat_template.encode()).hexdigest()[:16]


def policy_template_digest(policy: object) -> str | None:
    """The template a policy renders prompts with (a local tokenizer's), or None for served models."""
    tokenizer = getattr(policy, "tokenizer", None)
    return template_digest(getattr(tokenizer, "chat_template", None))
