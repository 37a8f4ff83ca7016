"""The whole pipeline as a Prefect flow on the tiny model: lineage, and a rerun that is all cache hits."""

import pytest

from flows.config import PipelineConfig
from flows.pipeline import pipeline
from storage import ArtifactStore, Catalog

TINY = {
    "policy": {"spec": "hf:tiny"},
    "synthesis": {"train_tasks": 6, "eval_tasks": 3},
    "collect": {"samples_per_task": 2, "shard_size": 3, "agent": {"max_turns": 2, "max_new_tokens": 16}},
    "evaluate": {"agent": {"max_turns": 2, "max_new_tokens": 16}},
    "train": {"max_steps": 1, "batch_size": 2},
}


@pytest.mark.slow
def test_pipeline_records_lineage_and_reruns_from_cache(prefect_harness, tmp_path):
    config = PipelineConfig.model_validate({**TINY, "home": str(tmp_path)})
    first = pipeline(config)
    assert first.cache_hits == 0 and first.computed == len(first.stages)
    assert [s.tasks for s in first.rounds] == [3, 3]

    catalog = Catalog(ArtifactStore(tmp_path).catalog_path)
    kinds = {row["kind"] for row in catalog.artifacts()}
    assert {
        "world",
        "index",
        "tasks",
        "model",
        "trajectory-shard",
        "trajectories",
        "annotations",
        "selection",
        "checkpoint",
        "evaluation",
    } <= kinds
    checkpoint = catalog.artifacts(kind="checkpoint")[0]["id"]
    ancestor_stages = {row["stage"] for row in catalog.ancestors(checkpoint)}
    assert {
        "world",
        "index",
        "synthesize",
        "base-model",
        "collect-shard",
        "merge-trajectories",
        "collect-oracle",
        "annotate",
        "select",
    } <= ancestor_stages
    assert {row["stage"] for row in catalog.descendants(checkpoint)} == {"evaluate"}
    counts = catalog.counts()

    second = pipeline(config)
    assert second.computed == 0 and second.cache_hits == len(second.stages) == len(first.stages)
    assert [s.model_dump() for s in second.rounds] == [s.model_dump() for s in first.rounds]
    after = catalog.counts()
    assert after["artifacts"] == counts["artifacts"] and after["edges"] == counts["edges"]
    assert after["runs"] == 2
    assert {r["state"] for r in catalog.query("SELECT state FROM runs")} == {"Completed"}
