"""Agent-RRM as a model: ``<think>``, ``<critique>``, ``<score>`` in [0, 1], judging the process only.

The reward model sees the question and the trajectory, never the gold answer; its critique is written
to be shown to the agent (critique-and-refine collection) and must not reveal the answer. Each
critique is checked against the gold answer and its aliases; one that names it is kept, flagged
(``leaks_answer``) and counted in the reliability report, and collection never shows it to the agent.
"""

from __future__ import annotations

from storage.schemas import Failure, Judgement, Step, Task, Trajectory
from tasks.judge.asking import JudgeModel, judgements
from tasks.judge.parsing import DATA_RULE, ProcessVerdict, parse_process
from tasks.judge.prompts import trajectory_text
from tasks.judge.reference import leaks_answer

RRM_SYSTEM = (
    "You are a reasoning reward model for search agents. You do not know the correct answer: judge "
    "the agent's process, not its final answer. Check whether it called tools when it needed them and "
    "not for what it already knew; misused tools (irrelevant searches, bad arguments, invented document "
    "ids, repeated calls with no new purpose); understood that results can be partial or noisy; fixed "
    "wrong assumptions; made no unverified guesses and no fabricated tool results.\n" + DATA_RULE + "\n"
    "Reply with exactly three blocks:\n<think>your analysis</think>\n<critique>a short, actionable list "
    "of flaws, which the agent will read; never reveal or hint at the answer</critique>\n"
    "<score>a number from 0 (harmful or wrong reasoning) to 1 (flawless, well-justified tool use)</score>"
)


def rrm_messages(question: str, steps: list[Step]) -> list[dict]:
    user = f"Question: {question}\n\nAgent Trajectory:\n{trajectory_text(steps)}"
    return [{"role": "system", "content": RRM_SYSTEM}, {"role": "user", "content": user}]


def process_fields(task: Task, verdict: ProcessVerdict) -> dict:
    """Agent-RRM's score, its analysis, and the critique the agent will read, checked for the answer."""
    return {
        "score": verdict.score,
        "think": verdict.think,
        "critique": verdict.critique,
        "leaks_answer": leaks_answer(verdict.critique, task),
    }


def judge_process(
    model: JudgeModel, items: list[tuple[Trajectory, Task]]
) -> tuple[dict[str, Judgement], list[Failure]]:
    results = model.ask(
        [rrm_messages(task.question, t.steps) for t, task in items], [parse_process] * len(items)
    )
    return judgements(model, "process", items, results, process_fields)
