"""What a trajectory answered, and whether that was right, as selection counts it.

Collection's resampling pass and the annotation stage both ask; this module sits below both, so
collection does not import the judges (whose every edit would then count as a change to collection's
code and rebuild every rollout).
"""

from __future__ import annotations

from storage.schemas import Task, Trajectory
from tasks.rewards.outcome import exact_match
from tasks.turns import last_answer


def prediction(trajectory: Trajectory) -> str | None:
    """The last ``<answer>`` the agent gave (its last step's text), else the recorded final answer."""
    if trajectory.steps and trajectory.steps[-1].action == "answer":
        return last_answer(trajectory.steps[-1].raw) or trajectory.final_answer
    return trajectory.final_answer


def answered_right(trajectory: Trajectory, task: Task) -> bool:
    """Exact match of the prediction against the answer or an alias; a rollout a backend or the
    retriever cut short counts as wrong (``Trajectory.error``: it is never trained on)."""
    if trajectory.error is not None:
        return False
    return exact_match(prediction(trajectory), [task.answer, *task.aliases]) >= 1
