"""Why a held-out answer was wrong: what the agent had retrieved, against the task's gold pages.

pass@1 says how many tasks a policy got wrong; the next question after a round is which mistake it
stopped (or started) making. A small search agent fails in a few recognisable ways, and the
trajectory shows which without any judge: the gold pages a task's hops live on (or the supporting
pages a user's question names) either were all retrieved before the answer or were not, and the
searches either each found a new one or did not. Each task's first (greedy) sample is classified,
the one pass@1 scores:

- ``right``: the answer is right.
- ``no_answer``: no answer at all (turns ran out, malformed output, a backend gave up).
- ``stopped_short``: answered before every gold page was found, each search having found a new one:
  the path was right and a hop too short.
- ``lost_the_path``: answered before every gold page was found, after a search that found no new
  one (a misspelt name, the wrong relation looked up).
- ``went_past``: every gold page was found, and the agent still searched on before a wrong answer;
  most often it answers with what that search found, a hop too many.
- ``misread``: every gold page was found, no search after it, and the answer is still wrong (the
  wrong fact of a page, a wrong calculation).
- ``unknown``: wrong, on a task that names no gold pages, so the kinds above cannot be told apart.

The classification reads gold pages after the evaluation is scored; the agent never sees it.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from storage.schemas import EvalRow, Task, Trajectory
from tasks.evaluate.buckets import first_samples

FailureKind = Literal[
    "right", "no_answer", "stopped_short", "lost_the_path", "went_past", "misread", "unknown"
]
FAILURE_KINDS: tuple[FailureKind, ...] = (
    "right",
    "no_answer",
    "stopped_short",
    "lost_the_path",
    "went_past",
    "misread",
    "unknown",
)
RETRIEVING = ("search", "open")


def gold_pages(task: Task) -> set[str]:
    """The pages a task's answer rests on: its hops' pages, or the supporting pages a question names."""
    return set(task.evidence_doc_ids) or set(task.supporting)


def failure_kind(trajectory: Trajectory | None, task: Task, right: bool) -> FailureKind:
    if right:
        return "right"
    if trajectory is None or trajectory.final_answer is None:
        return "no_answer"
    gold = gold_pages(task)
    if not gold:
        return "unknown"
    seen: set[str] = set()
    wasted = searched_after_complete = False
    for step in trajectory.steps:
        if step.action not in RETRIEVING:
            continue
        if seen >= gold:
            searched_after_complete = True
        found = gold & set(step.retrieved_doc_ids)
        wasted |= not found - seen
        seen |= found
    if seen >= gold:
        return "went_past" if searched_after_complete else "misread"
    return "lost_the_path" if wasted else "stopped_short"


def failure_kinds(
    rows: list[EvalRow], trajectories: dict[str, Trajectory], tasks: dict[str, Task]
) -> dict[str, FailureKind]:
    """Task id -> the kind of its first (greedy) sample, right exactly where pass@1 counts it right."""
    return {
        task_id: failure_kind(trajectories.get(row.trajectory_id), tasks[task_id], row.exact_match == 1.0)
        for task_id, row in first_samples(rows).items()
    }


def failure_counts(kinds: dict[str, FailureKind]) -> dict[str, int]:
    """Tasks per kind, every kind listed (0 included) in a fixed order, so rounds line up."""
    counted = Counter(kinds.values())
    return {kind: counted[kind] for kind in FAILURE_KINDS}
