"""The whole pipeline as one Prefect flow; the body reads as the data-flow diagram.

world -> index, tasks -> base policy -> evaluate
round r: collect (shards) -> annotate -> select -> train -> evaluate
"""

from __future__ import annotations

import logging
import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context

from flows.config import PipelineConfig
from flows.orchestration import check_concurrency_limit, make_task_runner
from flows.report import RoundReport, build_report
from flows.stages import StageRunner
from storage import ArtifactStore, Catalog
from tasks.agent.collect import MergeConfig, ShardConfig
from tasks.agent.oracle import OracleConfig
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
    started = time.perf_counter()
    logger = get_run_logger()
    logger.info("config: %s", config.model_dump_json())
    store = ArtifactStore(config.home)
    catalog = Catalog(store.catalog_path)
    flow_run_id = str(get_run_context().flow_run.id)
    catalog.record_run(flow_run_id, "trailforge-pipeline", config.model_dump(mode="json"), "Running")
    check_concurrency_limit(config.orchestration.concurrency_limit)
    try:
        with make_task_runner(config.orchestration) as task_runner:
            runner = StageRunner(
                store,
                catalog,
                flow_run_id,
                from_stage,
                task_runner=task_runner,
                concurrency_limit=config.orchestration.concurrency_limit,
            )
            report = _run_pipeline(config, runner, started)
    except BaseException:
        catalog.record_run(flow_run_id, "trailforge-pipeline", config.model_dump(mode="json"), "Failed")
        raise
    catalog.record_run(flow_run_id, "trailforge-pipeline", config.model_dump(mode="json"), "Completed")
    create_markdown_artifact(report.markdown(), key="round-report", description="Held-out scores per round")
    create_table_artifact(report.stages, key="stage-summary", description="What each stage did in this run")
    logging.getLogger(__name__).debug("report: %s", report.table())
    return report


def _run_pipeline(config: PipelineConfig, run: StageRunner, started: float) -> RoundReport:
    # 1-3: world, search index, tasks
    world = run("world", config.world, {})
    index = run("index", config.index, {"corpus": world})
    tasks = run("synthesize", config.synthesis, {"world": world})
    # 4: the starting policy, its held-out score, and gold-path demonstrations for a cold start
    policy = run("base-model", config.policy, {})
    oracle = run(
        "collect-oracle", OracleConfig(tools=config.collect.agent.tools), {"tasks": tasks, "index": index}
    )
    evaluations = [
        run("evaluate", config.evaluate, {"model": policy, "tasks": tasks, "index": index}, "evaluate base")
    ]

    sampling = config.collect.model_dump(exclude={"shard_size"})
    for round_index in range(1, config.rounds + 1):
        # Shards are submitted together: the task runner runs as many at once as it has workers.
        shards = run.map(
            "collect-shard",
            [
                (
                    ShardConfig(
                        **{**sampling, "seed": config.collect.seed + round_index - 1},
                        shard_index=k,
                        shard_size=config.collect.shard_size,
                    ),
                    {"model": policy, "tasks": tasks, "index": index},
                    f"collect r{round_index} shard {k + 1}/{config.n_shards}",
                )
                for k in range(config.n_shards)
            ],
        )
        trajectories = run("merge-trajectories", MergeConfig(), {"shards": shards}, f"merge r{round_index}")
        # 5-6: annotate every trajectory, keep the best (oracle demonstrations where none qualify)
        pool = {"tasks": tasks, "trajectories": [trajectories, oracle]}
        annotations = run("annotate", config.annotate, pool, f"annotate r{round_index}")
        selection = run(
            "select",
            config.select,
            {"annotations": annotations, "trajectories": [trajectories, oracle]},
            f"select r{round_index}",
        )
        # 7-8: fine-tune, then evaluate the new checkpoint on held-out tasks
        policy = run(
            "train", config.train, {"model": policy, "selection": selection}, f"train r{round_index}"
        )
        evaluations.append(
            run(
                "evaluate",
                config.evaluate,
                {"model": policy, "tasks": tasks, "index": index},
                f"evaluate r{round_index}",
            )
        )
    return build_report([load_summary(e) for e in evaluations], run.events, time.perf_counter() - started)
