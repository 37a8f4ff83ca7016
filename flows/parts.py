"""One flow per part of the pipeline, for running (or scheduling) a part on its own from the UI.

Each takes the pipeline's parameter model, so what a part builds has the ids the whole pipeline
would give it: a part reuses what a pipeline run built and the other way round. Upstream stages a
part needs are looked up (or built once) the same way.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.config import PipelineConfig
from flows.pipeline import publish_report, rounds_report
from flows.recipe import (
    annotate_and_select,
    build_task_set,
    carried_selections,
    collect,
    find_artifact,
    oracle_fallback,
    round_one_policy,
)
from flows.report import RoundReport
from flows.stages import StageRunner, stage_runner
from storage import ArtifactStore

POLICY_KINDS = ("checkpoint", "model")  # what a model_id may name, as starting_policy looks it up


def _given(config: PipelineConfig, artifact_id: str | None, kinds: tuple[str, ...]) -> None:
    """Fail on a malformed or unknown id before the run is recorded or its task runner started.

    Ids typed into a UI form name directories in the store; ``../x`` never gets near one.
    """
    if artifact_id is not None:
        find_artifact(ArtifactStore(config.home), artifact_id, kinds)


def _summary(run: StageRunner, **refs) -> dict[str, str]:
    """The ids a part produced, returned and shown in the UI as a table."""
    ids = {role: ref.id for role, ref in refs.items()}
    create_table_artifact(
        [{"role": role, "artifact": aid} for role, aid in ids.items()],
        description="Artifacts this run produced or reused",
    )
    return ids


@flow(name="trailforge-synthesis")
def synthesis(config: PipelineConfig | None = None) -> dict[str, str]:
    """The search world (or the user corpus of ``config.corpus``), its index, the train/held-out tasks
    and the user's question set (``config.eval_questions``), if any."""
    config = config or PipelineConfig()
    with stage_runner("trailforge-synthesis", config, config.home, config.orchestration) as run:
        task_set = build_task_set(run, config)
        extra = {"questions": task_set.questions} if task_set.questions is not None else {}
        if task_set.pool is not None:
            extra["pool"] = task_set.pool
        return _summary(run, world=task_set.world, index=task_set.index, tasks=task_set.tasks, **extra)


@flow(name="trailforge-collection")
def collection(
    config: PipelineConfig | None = None, model_id: str | None = None, round_index: int = 1
) -> dict[str, str]:
    """Trajectories of one round: ``model_id`` (a model or checkpoint; default the base model after
    its cold start, as round 1 of the pipeline) on every training task. ``round_index`` picks the
    round's sampling seed."""
    config = config or PipelineConfig()
    _given(config, model_id, POLICY_KINDS)
    with stage_runner("trailforge-collection", config, config.home, config.orchestration) as run:
        task_set = build_task_set(run, config)
        _, policy, start = round_one_policy(run, config, model_id, task_set)
        carried = carried_selections(run, policy, start)
        trajectories = collect(run, config, policy, task_set.for_rounds(), round_index, carried)
        return _summary(run, model=policy, trajectories=trajectories)


@flow(name="trailforge-annotation")
def annotation(config: PipelineConfig | None = None, trajectories_id: str | None = None) -> dict[str, str]:
    """Judge a trajectories artifact (default: round 1's collection) and select the best."""
    config = config or PipelineConfig()
    _given(config, trajectories_id or None, ("trajectories",))
    with stage_runner("trailforge-annotation", config, config.home, config.orchestration) as run:
        given = trajectories_id and find_artifact(run.store, trajectories_id, ("trajectories",))
        task_set = build_task_set(run, config)
        if not given:
            _, policy, start = round_one_policy(run, config, None, task_set)
            given = collect(
                run, config, policy, task_set.for_rounds(), 1, carried_selections(run, policy, start)
            )
        trajectories = given
        oracle = oracle_fallback(run, config, task_set)
        annotations, selection = annotate_and_select(
            run, config, task_set.for_rounds(), trajectories, oracle, 1
        )
        return _summary(run, trajectories=trajectories, annotations=annotations, selection=selection)


@flow(name="trailforge-rounds")
def rounds(config: PipelineConfig | None = None, model_id: str | None = None) -> RoundReport:
    """``config.rounds`` more rounds from ``model_id`` (a checkpoint of an earlier run, say)."""
    config = config or PipelineConfig()
    _given(config, model_id, POLICY_KINDS)
    with stage_runner("trailforge-rounds", config, config.home, config.orchestration) as run:
        report = rounds_report(run, config, model_id)
    publish_report(report)
    return report


PART_FLOWS = {
    "synthesis": synthesis,
    "collection": collection,
    "annotation": annotation,
    "rounds": rounds,
}
