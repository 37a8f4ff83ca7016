"""Judge prompts and the parsers of their answers, for critics served by any backend.

Rate (SRR-Judge): one proposed step, in the context of the question and the steps so far, gets a
1-5 rating and a one-sentence critique. Cut (Search-R2): a finished trajectory's steps are listed
and the judge names the first flawed one, or none. A reply that does not follow the format raises
:class:`JudgeOutputError` carrying the raw text, so the caller can record it instead of guessing.
"""

from __future__ import annotations

import re

from storage.schemas import Step, Task
from tasks.judge.parsing import DATA_RULE, JudgeOutputError, after_thinking, fence
from tasks.turns import ParsedTurn

RATE_SYSTEM = (
    "You judge one step of a search agent that answers questions by searching a document collection. "
    "Rate the proposed step from 1 (useless or wrong) to 5 (the best next step): does it look for "
    "evidence the question still needs, or answer only with support from what was found? "
    "Reply in exactly two lines:\nRating: <1-5>\nCritique: <one sentence on how to do better>\n" + DATA_RULE
)

CUT_SYSTEM = (
    "You review a finished search-agent trajectory. Find the first step that is flawed: a search "
    "that cannot find what the question needs, an unsupported answer, or an invalid action. Reply "
    "in exactly one line:\nFirst flawed step: <number>\nor\nFirst flawed step: none\n" + DATA_RULE
)

_RATING = re.compile(r"rating\s*[:=]\s*([1-5])\b", re.IGNORECASE)
_CRITIQUE = re.compile(r"critique\s*[:=]\s*(.+)", re.IGNORECASE)
_CUT = re.compile(r"first flawed step\s*[:=]\s*(none|\d+)", re.IGNORECASE)
OBSERVATION_CHARS = 300


def _step_line(number: int, action: str, argument: str, observation: str | None) -> str:
    line = f"Step {number}: {action}({argument})"
    if observation:
        line += "\n" + fence(observation[:OBSERVATION_CHARS], f"result of step {number}")
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
    """The judge's last ``Rating:`` line (and the critique after it); quoted ones earlier do not count."""
    body = after_thinking(text)
    ratings = list(_RATING.finditer(body))
    if not ratings:
        raise JudgeOutputError("no 'Rating: 1-5' line", text)
    critique = _CRITIQUE.search(body, ratings[-1].end())
    return int(ratings[-1].group(1)), critique.group(1).strip() if critique else ""


def parse_cut(text: str, n_steps: int) -> int | None:
    """The 0-based index of the first flawed step, or None when the judge accepts the trajectory."""
    found = next(reversed(list(_CUT.finditer(after_thinking(text)))), None)
    if found is None:
        raise JudgeOutputError("no 'First flawed step:' line", text)
    if found.group(1).lower() == "none":
        return None
    number = int(found.group(1))
    if not 1 <= number <= n_steps:
        raise JudgeOutputError(f"step {number} is not one of the {n_steps} steps", text)
    return number - 1


def action_text(step: Step) -> str:
    if step.action == "invalid":
        return "(none: the reply had no valid action tag)"
    return f"<{step.action}>{step.argument}</{step.action}>"


def step_block(step: Step, number: int) -> str:
    """One step as judges see it: the thought, the action, and the tool's result fenced as data."""
    lines = [f"Step {number}", f"Thought: {step.thought[:OBSERVATION_CHARS] or '(none)'}"]
    lines.append(f"Action: {action_text(step)}")
    if step.observation:
        lines.append(fence(step.observation[:OBSERVATION_CHARS], f"result of step {number}"))
    return "\n".join(lines)


def trajectory_text(steps: list[Step]) -> str:
    return "\n\n".join(step_block(s, i) for i, s in enumerate(steps, 1)) or "(no steps)"
