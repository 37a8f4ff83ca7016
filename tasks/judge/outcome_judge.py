"""A binary LLM-as-judge of the outcome: given question, gold answer and prediction, correct or not.

For answers that exact match and token F1 under-credit (a paraphrase, another valid form of a date).
"""

from __future__ import annotations

from storage.schemas import Failure, Judgement, Task, Trajectory
from tasks.judge.asking import JudgeModel, judgements
from tasks.judge.parsing import parse_outcome

OUTCOME_SYSTEM = (
    "You check a search agent's final answer. Given the question, the gold answer (with accepted "
    "aliases) and the prediction, decide whether the prediction names the same thing as the gold "
    "answer. End your reply with one line: 'Verdict: correct' or 'Verdict: incorrect'."
)


def outcome_messages(task: Task, prediction: str | None) -> list[dict]:
    gold = " | ".join([task.answer, *task.aliases])
    user = f"Question: {task.question}\nGold answer: {gold}\nPrediction: {prediction or '(no answer)'}"
    return [{"role": "system", "content": OUTCOME_SYSTEM}, {"role": "user", "content": user}]


def judge_outcomes(
    model: JudgeModel, items: list[tuple[Trajectory, Task, str | None]]
) -> tuple[dict[str, Judgement], list[Failure]]:
    results = model.ask(
        [outcome_messages(task, prediction) for _, task, prediction in items], [parse_outcome] * len(items)
    )
    pairs = [(t, task) for t, task, _ in items]
    return judgements(model, "outcome", pairs, results, lambda _, correct: {"score": float(correct)})
