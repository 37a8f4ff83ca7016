"""The whole pipeline as one Prefect flow; the body reads as the data-flow diagram.

world -> index, tasks -> base policy -> evaluate
round r: collect (shards) -> annotate -> select -> train -> evaluate
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.config import PipelineConfig
from flows.recipe import build_task_set, evaluate, run_rounds, starting_policy
from flows.report import RoundReport, build_report
from flows.stages import StageRunner, stage_runner
from tasks.evaluate.summary import load_summary

PIPELINE_STAGES = (
    "world",
    "index",
    "synthesize",
    "base-model",
    "collect-oracle",
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
    """Tasks, the starting policy's held-out score, then every round; the report of it all."""
    started = time.perf_counter()
    policy = starting_policy(run, config, model_id)  # an unknown id fails before any work
    task_set = build_task_set(run, config)
    evaluations = [evaluate(run, config, policy, task_set, "evaluate base")]
    evaluations += [r.evaluation for r in run_rounds(run, config, policy, task_set)]
    return build_report([load_summary(e) for e in evaluations], run.events, time.perf_counter() - started)


def publish_report(report: RoundReport) -> None:
    create_markdown_artifact(report.markdown(), key="round-report", description="Held-out scores per round")
    create_table_artifact(report.stages, key="stage-summary", description="What each stage did in this run")
