"""The whole pipeline as a Prefect flow on the tiny model: lineage, and a rerun that is all cache hits."""

import pytest

from flows.config import PipelineConfig
from flows.pipeline import pipeline
from storage import ArtifactStore, Catalog

TINY = {
    "policy": {"spec": "hf:tiny"},
    "synthesis": {"train_tasks": 6, "eval_tasks": 3},
    "collect": {
        "samples_per_task": 2,
        "shard_size": 3,
        "resample": 1,  # the tiny model solves nothing, so every task gets one more rollout
        "agent": {"max_turns": 2, "max_new_tokens": 16},
    },
    "evaluate": {"agent": {"max_turns": 2, "max_new_tokens": 16}},
    "train": {"max_steps": 1, "batch_size": 2},
    "cold_start": {"train": {"max_steps": 1, "batch_size": 2}},
    "select": {"balance_training": True},
}


@pytest.mark.slow
def test_pipeline_records_lineage_and_reruns_from_cache(prefect_harness, tmp_path):
    config = PipelineConfig.model_validate({**TINY, "home": str(tmp_path)})
    first = pipeline(config)
    assert first.cache_hits == 0 and first.computed == len(first.stages)
    assert [r.label for r in first.rounds] == ["base", "cold start", "round 1"]
    assert [r.summary.tasks for r in first.rounds] == [3, 3, 3]
    assert first.rounds[1].kept == 6 and first.rounds[2].training["steps"] == 1
    # 6 tasks x (2 samples + 1 resampled)
    assert sum(f.removed for f in first.rounds[2].filters) == 18 - first.rounds[2].kept
    # every held-out task's greedy answer classified, right exactly as often as pass@1 says
    for entry in first.rounds:
        assert sum(entry.failures.values()) == 3
        assert entry.failures["right"] == round(3 * entry.summary.pass_at_1)
    assert "how the held-out answers went" in first.table()

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
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        published = client.read_artifacts()
    progress = [a for a in published if a.type == "progress" and "collect shard" in (a.description or "")]
    assert len(progress) >= 2 and all(a.data == 100.0 for a in progress)  # one per shard, finished
    assert {"round-report", "stage-summary", "round-plot"} <= {a.key for a in published}

    checkpoint = first.rounds[-1].checkpoint_id
    assert {r["id"] for r in catalog.ancestors(checkpoint)} >= {first.rounds[1].checkpoint_id}
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
        "demonstrations",
    } <= ancestor_stages
    assert {row["stage"] for row in catalog.descendants(checkpoint)} == {"evaluate"}
    # balance_training weighs the round's selection with the carried demonstrations: they are its input
    selection = first.rounds[2].selection_id
    carried = [
        e["parent"] for e in catalog.edges_of(selection) if e["child"] == selection and "carried" in e["role"]
    ]
    assert carried == [first.rounds[1].selection_id]
    # the resampling shards name the first pass's shards as what they resampled from
    shards = {row["id"] for row in catalog.artifacts(kind="trajectory-shard")}
    sampled = {
        (e["parent"], e["child"])
        for shard in shards
        for e in catalog.edges_of(shard)
        if e["role"].startswith("sampled[")
    }
    first_pass, resampling = {p for p, _ in sampled}, {c for _, c in sampled}
    assert len(sampled) == len(first_pass) == len(resampling) == 2  # each resamples its own first shard
    assert first_pass | resampling == shards
    counts = catalog.counts()

    second = pipeline(config)
    assert second.computed == 0 and second.cache_hits == len(second.stages) == len(first.stages)
    assert [s.model_dump() for s in second.rounds] == [s.model_dump() for s in first.rounds]
    after = catalog.counts()
    assert after["artifacts"] == counts["artifacts"] and after["edges"] == counts["edges"]
    assert after["runs"] == 2
    assert {r["state"] for r in catalog.query("SELECT state FROM runs")} == {"Completed"}

    # --from-stage annotate: annotate and everything downstream is rebuilt, the rest reused.
    store = ArtifactStore(tmp_path)
    annotations = catalog.artifacts(kind="annotations")[0]["id"]
    stamp = (store.path("annotations", annotations) / "_meta.json").stat().st_mtime_ns
    third = pipeline(config, from_stage="annotate")
    ran = {e["stage"] for e in third.stages if not e["reused"]}
    assert ran == {"annotate r1", "select r1", "train r1", "evaluate r1"}
    assert (store.path("annotations", annotations) / "_meta.json").stat().st_mtime_ns > stamp
    assert [s.model_dump() for s in third.rounds] == [s.model_dump() for s in first.rounds]
    assert catalog.counts()["artifacts"] == counts["artifacts"]  # same ids: rebuilt, not duplicated
    with pytest.raises(ValueError, match="not a pipeline stage"):
        pipeline(config, from_stage="nope")


@pytest.mark.slow
def test_explain_says_why_an_artifact_is_reused_or_rebuilt(prefect_harness, tmp_path, capsys):
    import shutil

    from flows.cli import main
    from tasks.stage import get_stage

    config = PipelineConfig.model_validate(
        {**TINY, "home": str(tmp_path), "synthesis": {"train_tasks": 3, "eval_tasks": 2}}
    )
    pipeline(config)
    catalog = Catalog(ArtifactStore(tmp_path).catalog_path)
    annotations = catalog.artifacts(kind="annotations")[0]
    assert main(["explain", annotations["id"], "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reuses it" in out and "input shards[0]" in out
    assert f"code version  {get_stage('annotate').code_version}" in out
    shard = catalog.artifacts(kind="annotation-shard")[0]
    assert main(["explain", shard["id"], "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "input trajectories[0]" in out and "input tasks" in out

    selection = next(a for a in catalog.artifacts(kind="selection") if a["stage"] == "select")
    shutil.rmtree(ArtifactStore(tmp_path).path("annotations", annotations["id"]))
    assert main(["explain", selection["id"], "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "would recompute it" in out and f"input annotations ({annotations['id']}) is missing" in out
    assert main(["explain", "0" * 20, "--home", str(tmp_path)]) == 1  # a well-formed id not in the catalog
