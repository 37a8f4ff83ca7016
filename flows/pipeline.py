"""The whole pipeline as one Prefect flow; the body reads as the data-flow diagram.

world -> index, tasks -> base policy -> evaluate
round r: collect (shards) -> annotate -> select -> train -> evaluate
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from flows.config import PipelineConfig
from flows.recipe import (
    TaskSet,
    build_task_set,
    carried_selections,
    evaluate,
    find_artifact,
    round_one_policy,
    run_rounds,
)
from flows.report import RoundEntry, RoundReport, build_report, round_entry
from flows.round_plot import data_url, plot_rounds, report_plot_path
from flows.stages import StageRunner, stage_runner
from storage import ArtifactRef
from tasks.evaluate.summary import load_summary

PIPELINE_STAGES = (
    "world",
    "corpus",
    "index",
    "synthesize",
    "synthesize-corpus",
    "extend-pool",
    "questions",
    "base-model",
    "collect-oracle",
    "demonstrations",
    "evaluate",
    "collect-shard",
    "merge-trajectories",
    "annotate-shard",
    "annotate",
    "select",
    "train",
)


@flow(name="trailforge-pipeline")
def pipeline(config: PipelineConfig | None = None, from_stage: str | None = None) -> RoundReport:
    """The whole pipeline; ``from_stage`` rebuilds that stage and everything downstream of it."""
    config = config or PipelineConfig()
    if from_stage is not None and from_stage not in PIPELINE_STAGES:
        raise ValueError(
            f"from_stage {from_stage!r} is not a pipeline stage; choose from {', '.join(PIPELINE_STAGES)}"
        )
    get_run_logger().info("config: %s", config.model_dump_json())
    with stage_runner("trailforge-pipeline", config, config.home, config.orchestration, from_stage) as run:
        report = rounds_report(run, config, model_id=None)
    publish_report(report)
    return report


def rounds_report(run: StageRunner, config: PipelineConfig, model_id: str | None) -> RoundReport:
    """Tasks, the starting policy's held-out score, the cold start, then every round; the report."""
    started = time.perf_counter()
    if model_id is not None:
        find_artifact(run.store, model_id, ("checkpoint", "model"))  # an unknown id fails before any work
    task_set = build_task_set(run, config)
    base, policy, start = round_one_policy(run, config, model_id, task_set)
    held_out = task_set.tasks
    entries = [round_entry("base", evaluate(run, config, base, task_set, "evaluate base"), tasks=held_out)]
    carried = carried_selections(run, policy, start)
    if start is not None:
        entries.append(
            round_entry("cold start", start.evaluation, start.demonstrations, start.checkpoint, held_out)
        )
    for i, result in enumerate(run_rounds(run, config, policy, task_set, carried), 1):
        entries.append(
            round_entry(f"round {i}", result.evaluation, result.selection, result.checkpoint, held_out)
        )
    evaluate_user_questions(run, config, task_set, entries, base)
    report = build_report(entries, run.events, time.perf_counter() - started)
    report.plot = str(plot_rounds(report, report_plot_path(run.store.root, report)))
    return report


def evaluate_user_questions(
    run: StageRunner, config: PipelineConfig, task_set: TaskSet, entries: list[RoundEntry], base: ArtifactRef
) -> None:
    """Every policy of the report also on the user's question set (``evaluate-questions ROUND``), its
    scores beside the held-out tasks' in the same entry; nothing without ``eval_questions``."""
    if task_set.questions is None:
        return
    for entry in entries:
        policy = base if entry.checkpoint_id is None else run.store.ref("checkpoint", entry.checkpoint_id)
        inputs = {"model": policy, "tasks": task_set.questions, "index": task_set.index}
        evaluation = run("evaluate", config.evaluate, inputs, f"evaluate-questions {entry.label}")
        entry.user_questions, entry.user_questions_id = load_summary(evaluation), evaluation.id


def publish_report(report: RoundReport) -> None:
    create_markdown_artifact(report.markdown(), key="round-report", description="Held-out scores per round")
    if report.plot:
        create_image_artifact(
            data_url(Path(report.plot)), key="round-plot", description="Held-out pass@1 per round and bucket"
        )
    create_table_artifact(report.stages, key="stage-summary", description="What each stage did in this run")
