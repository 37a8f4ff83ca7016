"""SRR-Judge as a model: per thought-action step an explanation, a 1-5 rating and a refined step.

``granularity="trajectory"`` asks once per trajectory for every step's verdict (a JSON list);
``"step"`` asks once per step, with the steps before it as context. Either way every call of a shard
goes out in one batch, and a trajectory is rated only when every verdict it needs could be read.
The judge sees the question and the trajectory, never the gold answer.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Literal

from storage.schemas import Failure, Judgement, Task, Trajectory
from tasks.judge.asking import JudgeModel, failure, judgements
from tasks.judge.parsing import DATA_RULE, StepVerdict, parse_step_verdict, parse_step_verdicts
from tasks.judge.prompts import step_block, trajectory_text

Granularity = Literal["trajectory", "step"]

_GUIDE = (
    "You are a step-level judge of a search agent that answers questions by searching a document "
    "collection. A step is a thought and an action. Rate a step from 1 (useless or wrong: a search "
    "that cannot find what is needed, a repeat, an invalid action, an answer without support) to 5 "
    "(the best possible next step). Explain each rating in one sentence, and give the refined step: "
    "the thought and action it should have been (one tag: <search>query</search>, <open>doc_id</open>, "
    "<calculate>expression</calculate> or <answer>answer</answer>); leave both empty for a step "
    "rated 5.\n" + DATA_RULE
)
TRAJECTORY_SYSTEM = (
    _GUIDE + "\nEnd your reply with one JSON object:\n"
    '{"steps": [{"step": 1, "explanation": "...", "rating": 4, "refined_thought": "...", '
    '"refined_action": "<search>...</search>"}, ...]} with one entry per step, in order.'
)
STEP_SYSTEM = (
    _GUIDE + "\nEnd your reply with one JSON object:\n"
    '{"explanation": "...", "rating": 4, "refined_thought": "...", "refined_action": "<search>...</search>"}'
)


def trajectory_messages(question: str, trajectory: Trajectory) -> list[dict]:
    user = f"Question: {question}\n\nTrajectory:\n{trajectory_text(trajectory.steps)}"
    return [{"role": "system", "content": TRAJECTORY_SYSTEM}, {"role": "user", "content": user}]


def step_messages(question: str, trajectory: Trajectory, index: int) -> list[dict]:
    steps = trajectory.steps
    history = trajectory_text(steps[:index]) if index else "(no steps before it)"
    user = (
        f"Question: {question}\n\nSteps before it:\n{history}\n\n"
        f"Step to judge:\n{step_block(steps[index], index + 1)}"
    )
    return [{"role": "system", "content": STEP_SYSTEM}, {"role": "user", "content": user}]


def step_fields(verdicts: list[StepVerdict]) -> dict:
    """SRR-Judge's ratings as a judgement's fields: the mean rating scaled to [0, 1], and the rewrites."""
    ratings = [v.rating for v in verdicts]
    refined = [
        {"step": i, "thought": v.refined_thought, "action": v.refined_action}
        for i, v in enumerate(verdicts)
        if v.refined_action
    ]
    return {
        "score": (sum(ratings) / len(ratings) - 1) / 4 if ratings else 0.0,
        "step_ratings": ratings,
        "explanations": [v.explanation for v in verdicts],
        "refined_json": json.dumps(refined),
    }


def _judgement(trajectory: Trajectory, judge: str, verdicts: list[StepVerdict], raw: str, attempts: int):
    return Judgement(
        trajectory_id=trajectory.id,
        task_id=trajectory.task_id,
        judge=judge,
        family="step",
        raw=raw,
        attempts=attempts,
        **step_fields(verdicts),
    )


def judge_steps(
    model: JudgeModel, items: list[tuple[Trajectory, Task]], granularity: Granularity = "trajectory"
) -> tuple[dict[str, Judgement], list[Failure]]:
    """Step verdicts by trajectory id; a trajectory with an unreadable verdict has failures instead."""
    judged: dict[str, Judgement] = {}
    failures: list[Failure] = []
    asked_for = [(t, task) for t, task in items if t.steps]
    for t, _ in items:
        if not t.steps:
            judged[t.id] = _judgement(t, model.name, [], "", 0)
    if granularity == "trajectory":
        results = model.ask(
            [trajectory_messages(task.question, t) for t, task in asked_for],
            [partial(parse_step_verdicts, n_steps=len(t.steps)) for t, _ in asked_for],
        )
        model_judged, model_failures = judgements(
            model, "step", asked_for, results, lambda _, verdicts: step_fields(verdicts)
        )
        return judged | model_judged, model_failures
    calls = [(t, task, i) for t, task in asked_for for i in range(len(t.steps))]
    results = model.ask(
        [step_messages(task.question, t, i) for t, task, i in calls], [parse_step_verdict] * len(calls)
    )
    by_trajectory: dict[str, list] = {}
    for (t, _, i), asked in zip(calls, results, strict=True):
        by_trajectory.setdefault(t.id, []).append(asked)
        if not asked.ok:
            failures.append(failure(t, "step", asked, step=i))
    for t, _ in asked_for:
        answers = by_trajectory[t.id]
        if all(a.ok for a in answers):
            raw = json.dumps([a.replies[-1] for a in answers])
            judged[t.id] = _judgement(
                t, model.name, [a.value for a in answers], raw, sum(len(a.replies) for a in answers)
            )
    return judged, failures
