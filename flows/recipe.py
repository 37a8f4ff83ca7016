"""The pipeline's steps as functions of a :class:`StageRunner`, shared by every flow.

The whole pipeline and the single-part flows (synthesis, collection, annotation, rounds) call the
same functions with the same parameter model, so a part run on its own builds exactly the artifacts
the pipeline would, and each reuses what the other already built.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.config import PipelineConfig
from flows.stages import StageRunner
from storage import ArtifactRef, ArtifactStore
from storage.ids import check_artifact_id
from tasks.agent.collect import MergeConfig, ShardConfig
from tasks.agent.oracle import OracleConfig
from tasks.judge.annotate import AnnotateShardConfig, n_shards


@dataclass(frozen=True)
class TaskSet:
    """What agents are trained and measured on: the search world, its index and the tasks."""

    world: ArtifactRef
    index: ArtifactRef
    tasks: ArtifactRef


@dataclass(frozen=True)
class RoundResult:
    trajectories: ArtifactRef
    annotations: ArtifactRef
    selection: ArtifactRef
    checkpoint: ArtifactRef
    evaluation: ArtifactRef


def build_task_set(run: StageRunner, config: PipelineConfig) -> TaskSet:
    world = run("world", config.world, {})
    index = run("index", config.index, {"corpus": world})
    tasks = run("synthesize", config.synthesis, {"world": world, "index": index})
    if not run.in_process:
        from tasks.synthesis.report import publish_report

        publish_report(tasks)
    return TaskSet(world, index, tasks)


def starting_policy(run: StageRunner, config: PipelineConfig, model_id: str | None) -> ArtifactRef:
    """The base model, or an existing model or checkpoint artifact named by id."""
    if model_id is None:
        return run("base-model", config.policy, {})
    return find_artifact(run.store, model_id, ("checkpoint", "model"))


def find_artifact(store: ArtifactStore, artifact_id: str, kinds: tuple[str, ...]) -> ArtifactRef:
    """An existing artifact of one of these kinds, named by an id given from outside (a flow form).

    The id is checked before it is joined to a path, so ``../x`` fails here, not somewhere on disk.
    """
    missing = f"no {' or '.join(kinds)} artifact {artifact_id!r}"
    try:
        check_artifact_id(artifact_id)
    except ValueError as error:
        raise ValueError(f"{missing}: {error}") from None
    for kind in kinds:
        if store.exists(kind, artifact_id):
            return store.ref(kind, artifact_id, reused=True)
    raise ValueError(f"{missing} under {store.root}")


def oracle_demonstrations(run: StageRunner, config: PipelineConfig, task_set: TaskSet) -> ArtifactRef:
    return run(
        "collect-oracle",
        OracleConfig(tools=config.collect.agent.tools),
        {"tasks": task_set.tasks, "index": task_set.index},
    )


def evaluate(run: StageRunner, config: PipelineConfig, policy: ArtifactRef, task_set: TaskSet, label: str):
    return run(
        "evaluate",
        config.evaluate,
        {"model": policy, "tasks": task_set.tasks, "index": task_set.index},
        label,
    )


def collect(
    run: StageRunner, config: PipelineConfig, policy: ArtifactRef, task_set: TaskSet, round_index: int
) -> ArtifactRef:
    """Rollouts of every training task, in cached shards submitted together, merged into one table."""
    sampling = config.collect.model_dump(exclude={"shard_size"})
    sampling["seed"] = config.collect.seed + round_index - 1
    inputs = {"model": policy, "tasks": task_set.tasks, "index": task_set.index}
    shards = run.map(
        "collect-shard",
        [
            (
                ShardConfig(**sampling, shard_index=k, shard_size=config.collect.shard_size),
                inputs,
                f"collect r{round_index} shard {k + 1}/{config.n_shards}",
            )
            for k in range(config.n_shards)
        ],
    )
    return run("merge-trajectories", MergeConfig(), {"shards": shards}, f"merge r{round_index}")


def annotate_and_select(
    run: StageRunner,
    config: PipelineConfig,
    task_set: TaskSet,
    trajectories: ArtifactRef,
    oracle: ArtifactRef,
    round_index: int,
) -> tuple[ArtifactRef, ArtifactRef]:
    """Judge every trajectory in cached shards, then keep the best (the oracle's where a task has none)."""
    pool = [trajectories, oracle]
    annotations = annotate(run, config, task_set, pool, f"annotate r{round_index}")
    selection = run(
        "select",
        config.select,
        {"annotations": annotations, "trajectories": pool},
        f"select r{round_index}",
    )
    return annotations, selection


def annotate(
    run: StageRunner, config: PipelineConfig, task_set: TaskSet, pool: list[ArtifactRef], label: str
) -> ArtifactRef:
    """Annotation shards submitted together, merged with the judge reliability report."""
    inputs = {"tasks": task_set.tasks, "trajectories": pool}
    count = n_shards(sum(ref.rows for ref in pool), config.annotate.shard_size)
    shards = run.map(
        "annotate-shard",
        [
            (
                AnnotateShardConfig(**config.annotate.model_dump(), shard_index=k),
                inputs,
                f"{label} shard {k + 1}/{count}",
            )
            for k in range(count)
        ],
    )
    annotations = run("annotate", config.annotate, {"shards": shards}, label)
    if not run.in_process:
        from tasks.judge.report import publish_reliability

        publish_reliability(annotations)
    return annotations


def run_rounds(
    run: StageRunner, config: PipelineConfig, policy: ArtifactRef, task_set: TaskSet
) -> list[RoundResult]:
    """``config.rounds`` rounds of collect -> annotate -> select -> train -> evaluate from ``policy``."""
    oracle = oracle_demonstrations(run, config, task_set)
    results = []
    for round_index in range(1, config.rounds + 1):
        trajectories = collect(run, config, policy, task_set, round_index)
        annotations, selection = annotate_and_select(run, config, task_set, trajectories, oracle, round_index)
        policy = run(
            "train", config.train, {"model": policy, "selection": selection}, f"train r{round_index}"
        )
        evaluation = evaluate(run, config, policy, task_set, f"evaluate r{round_index}")
        results.append(RoundResult(trajectories, annotations, selection, policy, evaluation))
    return results
