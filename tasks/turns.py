"""The ReAct turn format, read by both floors: the agent writes turns, the judges read them.

A turn is ``<think>...</think>`` followed by one action tag (Search-R1's tags plus ``open`` and
``calculate``). This module is below both :mod:`tasks.agent` and :mod:`tasks.judge`, so the judges
parse a step (a refined action, a proposal) without importing the agent, and the agent imports the
judges without a circle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACTIONS = ("search", "open", "calculate", "answer")
TOOL_ACTIONS = ("search", "open", "calculate")
ARGUMENT_NAMES = {"search": "query", "open": "doc_id", "calculate": "expression"}

_ACTION = re.compile(r"<(search|open|calculate|answer)>(.*?)</\1>", re.S)
_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_LAST_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


@dataclass(frozen=True)
class ParsedTurn:
    action: str  # one of ACTIONS, or "invalid"
    argument: str
    thought: str
    prefix: str  # the text before the action tag, kept verbatim as the message content


def parse_turn(text: str) -> ParsedTurn:
    match = _ACTION.search(text)
    think = _THINK.search(text)
    thought = think.group(1).strip() if think else ""
    if match is None:
        return ParsedTurn(action="invalid", argument="", thought=thought or text.strip(), prefix=text)
    argument = match.group(2).strip()
    if not argument:
        return ParsedTurn(action="invalid", argument="", thought=thought, prefix=text)
    if not think:
        thought = text[: match.start()].strip()
    return ParsedTurn(action=match.group(1), argument=argument, thought=thought, prefix=text[: match.start()])


def last_answer(text: str | None) -> str | None:
    """The content of the last ``<answer>...</answer>`` in a text, or None when there is none."""
    if not text:
        return None
    found = _LAST_ANSWER.findall(text)
    return found[-1].strip() if found else None
