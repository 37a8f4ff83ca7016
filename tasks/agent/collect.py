"""Collection stage: K rollouts per task, as cached shards merged into one trajectories artifact.

Each shard is its own artifact, so a run killed halfway keeps every finished shard and a rerun only
generates the rest. Shard boundaries depend only on the task list and the shard size.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage import ArtifactRef, ArtifactStore
from storage.schemas import Selection, Task, Trajectory
from storage.store import read_rows, read_table, write_table
from tasks.agent.environment import tool_for
from tasks.agent.loop import AgentConfig, run_agent
from tasks.agent.oracle import COLD_START_REASON
from tasks.llm.engines import check_model_spec, generator_from_spec, load_engine, precision, spec_environment
from tasks.rewards.answered import answered_right
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.evidence import load_tasks, out_of_reach

# The resampling pass draws with its own seed: a prompt's first draw under the first pass's seed would
# repeat that pass's first sample.
RESAMPLE_SEED_OFFSET = 1_000_003


class SamplingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples_per_task: int = Field(2, ge=1, le=1024, description="Rollouts per task (K).")
    temperature: float = Field(0.8, ge=0, le=5)
    seed: int = 0
    agent: AgentConfig = Field(default_factory=AgentConfig)
    skip_demonstrated: bool = Field(
        False,
        description="Rounds sample only the training tasks without a cold-start demonstration (set "
        "cold_start.tasks below synthesis.train_tasks). The policy already copies the gold path of a "
        "demonstrated task, so samples there add little; the rest is what it has not been shown.",
    )
    teacher: str | None = Field(
        None,
        description="Collect with this model instead of the current policy (distillation: the policy "
        "is still what is trained): hf:PATH, vllm:PATH or openai:MODEL@URL.",
    )

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, spec: str | None) -> str | None:
        return spec if spec is None else check_model_spec(spec)

    def for_id(self):
        """Refine settings cannot change trajectories collected in plain mode: reset for the id."""
        return self.model_copy(update={"agent": self.agent.for_id()})


class ShardConfig(SamplingConfig):
    split: str = "train"
    shard_index: int = Field(ge=0)
    shard_size: int = Field(ge=1)
    resample_below: int | None = Field(
        None,
        ge=1,
        description="A resampling shard: the tasks its first-pass shard (input `sampled`) answered right "
        "fewer than this many times; shard_index is then that shard's.",
    )
    first_sample_index: int = Field(0, ge=0, description="Number of the shard's first sample of a task.")


def undemonstrated(tasks: list[Task], demonstrations: list[ArtifactRef]) -> list[Task]:
    """The tasks no cold-start demonstration covers, in their order.

    Selections carried into a round also hold earlier rounds' kept trajectories; only the rows
    marked ``cold_start`` say a task has a gold path already.
    """
    shown = {
        row.task_id
        for ref in demonstrations
        for row in read_rows(ref, Selection)
        if row.reason == COLD_START_REASON
    }
    return [t for t in tasks if t.id not in shown]


def unsolved(tasks: list[Task], sampled: list[ArtifactRef], below: int) -> list[Task]:
    """The sampled tasks answered right fewer than ``below`` times, in their order.

    Right is what selection keeps as right (:func:`answered_right`). Tasks the trajectories never
    sampled are not returned: they were left out on purpose (the demonstrated ones) or belong to
    another shard.
    """
    by_id = {t.id: t for t in tasks}
    seen: set[str] = set()
    right: Counter[str] = Counter()
    for ref in sampled:
        for trajectory in read_rows(ref, Trajectory):
            task = by_id.get(trajectory.task_id)
            if task is None:
                continue
            seen.add(task.id)
            right[task.id] += answered_right(trajectory, task)
    return [t for t in tasks if t.id in seen and right[t.id] < below]


def shard_label(config: ShardConfig) -> str:
    """What a shard's progress bar says: a resampling shard is told from the first pass it resamples."""
    label = f"collect shard {config.shard_index + 1}"
    return f"{label}, resampled" if config.resample_below is not None else label


def produce_shard(work: Path, config: ShardConfig, inputs: Inputs, store: ArtifactStore) -> None:
    tasks = load_tasks(inputs["tasks"], config.split)
    if config.skip_demonstrated:
        tasks = undemonstrated(tasks, inputs.get("demonstrations") or [])
    if config.resample_below is not None:
        shard = unsolved(tasks, inputs["sampled"], config.resample_below)
    else:
        start = config.shard_index * config.shard_size
        shard = tasks[start : start + config.shard_size]
    out_of_reach(shard, config.agent.max_turns)
    model = inputs["model"]
    if config.teacher:
        generator, policy_name = generator_from_spec(config.teacher), config.teacher
    else:
        generator, policy_name = load_engine(model.uri, config.agent.engine), model.id
    trajectories, failures = run_agent(
        generator,
        tool_for(inputs["index"], config.agent.tools),
        shard,
        config=config.agent,
        samples_per_task=config.samples_per_task,
        temperature=config.temperature,
        seed=config.seed,
        policy_name=policy_name,
        first_sample_index=config.first_sample_index,
        stage="collect-shard",
        progress=shard_label(config),
    )
    write_table(work, trajectories)
    if failures:
        write_table(work, failures, name="failures")


class MergeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


def produce_merge(work: Path, config: MergeConfig, inputs: Inputs, store: ArtifactStore) -> None:
    tables = [read_table(shard) for shard in inputs["shards"]]
    # permissive: a shard whose fields are all empty (no steps, no answer) has null-typed columns
    write_table(work, pa.concat_tables([t for t in tables if t.num_rows], promote_options="permissive"))


def sampling_environment(config: ShardConfig, inputs: Inputs) -> dict:
    """Precision of the generating engine, and the weights behind local teacher or critic paths."""
    environment: dict = (
        {"teacher": spec_environment(config.teacher)}
        if config.teacher
        else {"precision": precision(config.agent.engine)}
    )
    refine = config.agent.refine
    if refine.mode != "plain" and refine.critic != "reference":
        environment["critic"] = spec_environment(refine.critic)
    return environment


SHARD_STAGE = Stage(
    name="collect-shard",
    kind="trajectory-shard",
    produce=produce_shard,
    config_model=ShardConfig,
    environment=sampling_environment,
)
MERGE_STAGE = Stage(
    name="merge-trajectories", kind="trajectories", produce=produce_merge, config_model=MergeConfig
)
