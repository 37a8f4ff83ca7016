"""Annotation stage: outcome rewards and step ratings for every trajectory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Annotation, Failure, Task, Trajectory
from storage.store import read_rows, write_table
from tasks.judge.reference import JUDGE_NAME, rate_steps
from tasks.rewards.outcome import exact_match, token_f1
from tasks.stage import Inputs, Stage
from tasks.synthesis.evidence import load_tasks


class AnnotateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    judge: Literal["reference"] = Field(
        JUDGE_NAME, description="Step judge; 'reference' rates against gold evidence (the only one yet)."
    )


def annotate(trajectory: Trajectory, task: Task) -> Annotation:
    answers = [task.answer, *task.aliases]
    ratings = rate_steps(trajectory.steps, task)
    return Annotation(
        trajectory_id=trajectory.id,
        task_id=task.id,
        policy=trajectory.policy,
        exact_match=exact_match(trajectory.final_answer, answers),
        f1=token_f1(trajectory.final_answer, answers),
        step_ratings=ratings,
        mean_rating=sum(ratings) / len(ratings) if ratings else 0.0,
        min_rating=min(ratings) if ratings else 0,
        tool_calls=sum(s.action in ("search", "open", "calculate") for s in trajectory.steps),
        judge=JUDGE_NAME,
    )


def produce_annotations(work: Path, config: AnnotateConfig, inputs: Inputs, store: ArtifactStore) -> None:
    tasks = {t.id: t for t in load_tasks(inputs["tasks"])}
    annotations, failures = [], []
    for source in inputs["trajectories"]:
        for trajectory in read_rows(source, Trajectory):
            task = tasks.get(trajectory.task_id)
            if task is None:
                failures.append(
                    Failure(
                        stage="annotate",
                        item_id=trajectory.id,
                        error_class="UnknownTask",
                        message=f"trajectory refers to task {trajectory.task_id!r}, which is not in the task set",
                    )
                )
                continue
            annotations.append(annotate(trajectory, task))
    write_table(work, annotations)
    if failures:
        write_table(work, failures, name="failures")


STAGE = Stage(name="annotate", kind="annotations", produce=produce_annotations, config_model=AnnotateConfig)
