"""Search-R2's usefulness judge as a model: per search call, did it return new evidence?

u_i is 1 when the documents a search returned hold a clue on the path to the gold answer that
earlier results did not already give (a repeat is never useful). Unlike the reward model, this
judge is shown the gold answer, as Search-R2's is. From gold evidence, see
:func:`tasks.judge.reference.search_usefulness`.
"""

from __future__ import annotations

from functools import partial

from storage.schemas import Failure, Judgement, Task, Trajectory
from tasks.judge.asking import JudgeModel, judgements
from tasks.judge.parsing import DATA_RULE, fence, parse_usefulness
from tasks.judge.prompts import OBSERVATION_CHARS

USEFULNESS_SYSTEM = (
    "You judge the search calls of a search agent. A search call is useful (1) when its results "
    "contain a clue on the path to the correct answer that earlier results did not already give; it "
    "is not useful (0) when its results are irrelevant or repeat what was already found, or the query "
    "repeats an earlier one.\n" + DATA_RULE + "\nEnd your reply with one JSON object: "
    '{"useful": [1, 0, ...]} with one 0 or 1 per search call, in order.'
)


def usefulness_messages(task: Task, trajectory: Trajectory) -> list[dict]:
    searches = [s for s in trajectory.steps if s.action == "search"]
    calls = "\n\n".join(
        f"Search {i}: {s.argument}\n{fence(s.observation[:OBSERVATION_CHARS], f'results of search {i}')}"
        for i, s in enumerate(searches, 1)
    )
    user = f"Question: {task.question}\nCorrect answer: {task.answer}\n\n{calls}"
    return [{"role": "system", "content": USEFULNESS_SYSTEM}, {"role": "user", "content": user}]


def judge_usefulness(
    model: JudgeModel, items: list[tuple[Trajectory, Task]]
) -> tuple[dict[str, Judgement], list[Failure]]:
    judged: dict[str, Judgement] = {}
    asked_for = []
    for t, task in items:
        n = sum(s.action == "search" for s in t.steps)
        if n:
            asked_for.append((t, task, n))
        else:  # nothing to judge: no search call, no usefulness
            judged[t.id] = Judgement(
                trajectory_id=t.id,
                task_id=task.id,
                judge=model.name,
                family="usefulness",
                score=0.0,
                attempts=0,
            )
    results = model.ask(
        [usefulness_messages(task, t) for t, task, _ in asked_for],
        [partial(parse_usefulness, n_searches=n) for *_, n in asked_for],
    )
    model_judged, failures = judgements(
        model,
        "usefulness",
        [(t, task) for t, task, _ in asked_for],
        results,
        lambda _, useful: {"score": sum(useful) / len(useful), "useful": useful},
    )
    return judged | model_judged, failures
