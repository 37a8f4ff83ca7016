"""Judge prompts and the parsers of their answers, for critics served by any backend.

Rate (SRR-Judge): one proposed step, in the context of the question and the steps so far, gets a
1-5 rating and a one-sentence critique. Cut (Search-R2): a finished trajectory's steps are listed
and the judge names the first flawed one, or none. A reply that does not follow the format raises
:class:`JudgeOutputError` carrying the raw text, so the caller can record it instead of guessing.
"""

from __future__ import annotations

import re

from storage.schemas import Step, Task
from tasks.agent.protocol import ParsedTurn

RATE_SYSTEM = (
    "You judge one step of a search agent that answers questions by searching a document collection. "
    "Rate the proposed step from 1 (useless or wrong) to 5 (the best next step): does it look for "
    "evidence the question still needs, or answer only with support from what was found? "
    "Reply in exactly two lines:\nRating: <1-5>\nCritique: <one sentence on how to do better>"
)

CUT_SYSTEM = (
    "You review a finished search-agent trajectory. Find the first step that is flawed: a search "
    "that cannot find what the question needs, an unsupported answer, or an invalid action. Reply "
    "in exactly one line:\nFirst flawed step: <number>\nor\nFirst flawed step: none"
)

_RATING = re.compile(r"rating\s*[:=]\s*([1-5])\b", re.IGNORECASE)
_CRITIQUE = re.compile(r"critique\s*[:=]\s*(.+)", re.IGNORECASE)
_CUT = re.compile(r"first flawed step\s*[:=]\s*(none|\d+)", re.IGNORECASE)
OBSERVATION_CHARS = 300


class JudgeOutputError(ValueError):
    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(f"{reason}: {raw[:200]!r}")
        self.reason = reason
        self.raw = raw


def _step_line(number: int, action: str, argument: str, observation: str | None) -> str:
    line = f"Step {number}: {action}({argument})"
    if observation:
        line += f"\n  -> {observation[:OBSERVATION_CHARS]}"
    return line


def _history(steps: list[Step]) -> list[str]:
    return [_step_line(s.index + 1, s.action, s.argument or "", s.observation) for s in steps]


def rate_messages(task: Task, steps: list[Step], proposal: ParsedTurn) -> list[dict]:
    history = _history(steps) or ["(no steps yet)"]
    user = "\n".join(
        [
            f"Question: {task.question}",
            "Steps so far:",
            *history,
            f"Proposed step: {proposal.action}({proposal.argument or ''})",
        ]
    )
    return [{"role": "system", "content": RATE_SYSTEM}, {"role": "user", "content": user}]


def cut_messages(task: Task, steps: list[Step]) -> list[dict]:
    user = "\n".join([f"Question: {task.question}", "Trajectory:", *_history(steps)])
    return [{"role": "system", "content": CUT_SYSTEM}, {"role": "user", "content": user}]


def parse_rating(text: str) -> tuple[int, str]:
    rating = _RATING.search(text)
    if rating is None:
        raise JudgeOutputError("no 'Rating: 1-5' line", text)
    critique = _CRITIQUE.search(text)
    return int(rating.group(1)), critique.group(1).strip() if critique else ""


def parse_cut(text: str, n_steps: int) -> int | None:
    """The 0-based index of the first flawed step, or None when the judge accepts the trajectory."""
    found = _CUT.search(text)
    if found is None:
        raise JudgeOutputError("no 'First flawed step:' line", text)
    if found.group(1).lower() == "none":
        return None
    number = int(found.group(1))
    if not 1 <= number <= n_steps:
        raise JudgeOutputError(f"step {number} is not one of the {n_steps} steps", text)
    return number - 1
