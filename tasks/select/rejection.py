"""Rejection sampling: keep the best correct trajectories, a few per task.

A trajectory is kept when its answer is right and its steps rate well (SRR-Judge defaults: mean
rating >= 3.5 and no step rated 1). Tasks where the policy produced nothing worth keeping fall back
to the oracle's demonstration, which is what lets the first round start from a policy that cannot
yet follow the protocol at all.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Annotation, Selection, Trajectory
from storage.store import read_rows, write_table
from tasks.agent.oracle import ORACLE
from tasks.stage import Inputs, Stage


class SelectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_mean_rating: float = Field(
        3.5, ge=1, le=5, description="Keep trajectories whose mean step rating is at least this."
    )
    min_step_rating: int = Field(
        2, ge=1, le=5, description="Reject trajectories with any step rated below this."
    )
    max_per_task: int = Field(2, ge=1, le=100, description="Trajectories kept per task at most.")
    oracle_fallback: bool = Field(
        True, description="Use the oracle demonstration for tasks with no kept trajectory."
    )


def keep_reason(annotation: Annotation, config: SelectConfig) -> tuple[bool, str]:
    if annotation.exact_match < 1:
        return False, "wrong_answer"
    if annotation.min_rating < config.min_step_rating:
        return False, "bad_step"
    if annotation.mean_rating < config.min_mean_rating:
        return False, "low_mean_rating"
    return True, "correct_and_well_rated"


def select(annotations: list[Annotation], config: SelectConfig) -> list[Selection]:
    by_task: dict[str, list[Annotation]] = defaultdict(list)
    oracle: dict[str, Annotation] = {}
    for a in annotations:
        if a.policy == ORACLE:
            oracle[a.task_id] = a
        elif keep_reason(a, config)[0]:
            by_task[a.task_id].append(a)
    chosen = []
    for task_id in sorted(set(by_task) | set(oracle)):
        kept = sorted(by_task.get(task_id, []), key=lambda a: (-a.mean_rating, a.tool_calls, a.trajectory_id))
        for a in kept[: config.max_per_task]:
            chosen.append(
                Selection(
                    trajectory_id=a.trajectory_id,
                    task_id=task_id,
                    source="policy",
                    reason="correct_and_well_rated",
                )
            )
        if not kept and config.oracle_fallback and task_id in oracle:
            chosen.append(
                Selection(
                    trajectory_id=oracle[task_id].trajectory_id,
                    task_id=task_id,
                    source="oracle",
                    reason="cold_start",
                )
            )
    return chosen


def produce_selection(work: Path, config: SelectConfig, inputs: Inputs, store: ArtifactStore) -> None:
    selections = select(read_rows(inputs["annotations"], Annotation), config)
    picked = {s.trajectory_id for s in selections}
    # The SFT set travels with the selection, so training reads one artifact.
    chosen = [t for source in inputs["trajectories"] for t in read_rows(source, Trajectory) if t.id in picked]
    write_table(work, selections)
    write_table(work, chosen, name="trajectories")


STAGE = Stage(name="select", kind="selection", produce=produce_selection, config_model=SelectConfig)
