"""Cold-start demonstrations: the trajectories a policy that cannot yet follow the protocol learns from.

A base model that never writes a well-formed search turn gives rejection sampling nothing to keep,
so training starts from demonstrations: the oracle's gold paths through the real tools, or a
teacher's correct trajectories (a selection). ``tasks`` caps how many training tasks get one,
drawn per difficulty bucket in proportion, so a cold start on a budget still sees every bucket; the
rest of the training pool is left to the rounds, which learn from answers alone (rejection
sampling) — the usual situation where demonstrations are costly and answers cheap.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Selection, Task, Trajectory
from storage.store import read_rows, write_table
from tasks.agent.oracle import COLD_START_REASON, ORACLE
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.evidence import load_tasks
from tasks.synthesis.stage import allocate


class DemonstrationsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: int | None = Field(
        None, ge=1, le=1_000_000, description="Training tasks with a demonstration (default: every one)."
    )
    seed: int = Field(0, description="Which tasks get one when there are more than `tasks`.")


def _order(task_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}|{task_id}".encode()).hexdigest()


def choose_tasks(tasks: list[Task], available: set[str], config: DemonstrationsConfig) -> list[str]:
    """Task ids with a demonstration, ``config.tasks`` of them split over buckets in proportion."""
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        if task.id in available:
            by_bucket[task.bucket].append(task.id)
    total = sum(len(ids) for ids in by_bucket.values())
    if config.tasks is None or config.tasks >= total:
        return sorted(available & {t.id for t in tasks})
    counts = allocate(config.tasks, {b: len(ids) / total for b, ids in by_bucket.items()})
    chosen = []
    for bucket, ids in sorted(by_bucket.items()):
        chosen += sorted(ids, key=lambda i: _order(i, config.seed))[: counts[bucket]]
    return sorted(chosen)


def demonstration_pool(ref) -> list[Trajectory]:
    """Trajectories of a collection (the oracle's) or the kept ones of a selection (a teacher's)."""
    if ref.kind == "selection":
        return read_rows(ref, Trajectory, name="trajectories")
    return read_rows(ref, Trajectory)


def produce_demonstrations(
    work: Path, config: DemonstrationsConfig, inputs: Inputs, store: ArtifactStore
) -> None:
    pool: dict[str, Trajectory] = {}
    for trajectory in sorted(demonstration_pool(inputs["demonstrations"]), key=lambda t: t.id):
        if trajectory.error is None and trajectory.finished:
            pool.setdefault(trajectory.task_id, trajectory)  # one per task
    chosen = choose_tasks(load_tasks(inputs["tasks"], "train"), set(pool), config)
    kept = [pool[task_id] for task_id in chosen]
    source = "oracle" if all(t.policy == ORACLE for t in kept) else "teacher"
    write_table(
        work,
        [
            Selection(trajectory_id=t.id, task_id=t.task_id, source=source, reason=COLD_START_REASON)
            for t in kept
        ],
    )
    write_table(work, kept, name="trajectories")


STAGE = Stage(
    name="demonstrations",
    kind="selection",
    produce=produce_demonstrations,
    config_model=DemonstrationsConfig,
)
