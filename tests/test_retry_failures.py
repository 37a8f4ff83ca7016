"""A failed item is retried alone: its shard is rebuilt, then what depends on it; nothing else."""

from __future__ import annotations

import pytest
from fastapi import Request, Response

from flows.cli import main
from flows.config import PipelineConfig
from flows.pipeline import pipeline
from storage import ArtifactStore, Catalog
from tasks.llm.hf import HFGenerator
from tasks.llm.openai_server import create_app
from tasks.stage import execute_stage
from tasks.synthesis.evidence import load_tasks
from tests.test_retriever_server import running


def server_refusing(generator: HFGenerator, outage: dict):
    """Refuses every request about ``outage['question']`` while it is set (a model not loaded, say)."""
    app = create_app(generator, "tiny")

    @app.middleware("http")
    async def refuse(request: Request, call_next):
        question = outage.get("question")
        if question and question.encode() in await request.body():
            return Response(status_code=422, content=b"model not available")
        return await call_next(request)

    return app


def stamps(store: ArtifactStore, catalog: Catalog) -> dict[str, int]:
    return {
        row["id"]: (store.path(row["kind"], row["id"]) / "_meta.json").stat().st_mtime_ns
        for row in catalog.artifacts()
    }


@pytest.mark.slow
def test_retrying_a_failed_item_rebuilds_its_shard_and_what_depends_on_it(
    prefect_harness, tmp_path, tiny_model, capsys
):
    outage: dict = {}
    with running(server_refusing(HFGenerator(tiny_model.uri, device="cpu"), outage)) as url:
        config = PipelineConfig.model_validate(
            {
                "home": str(tmp_path),
                "policy": {"spec": "hf:tiny"},
                "synthesis": {"train_tasks": 2, "eval_tasks": 2},
                "collect": {
                    "samples_per_task": 1,
                    "shard_size": 1,
                    "teacher": f"openai:tiny@{url}/v1",
                    "agent": {"max_turns": 1, "max_new_tokens": 8},
                },
                "evaluate": {"agent": {"max_turns": 1, "max_new_tokens": 8}},
                "train": {"max_steps": 1, "batch_size": 1},
                "cold_start": {"train": {"max_steps": 1, "batch_size": 1}},
            }
        )
        store = ArtifactStore(tmp_path)
        catalog = Catalog(store.catalog_path)
        world = execute_stage("world", store, config.world, {})
        index = execute_stage("index", store, config.index, {"corpus": world})
        tasks = execute_stage("synthesize", store, config.synthesis, {"world": world, "index": index})
        doomed = load_tasks(tasks, "train")[1]
        outage["question"] = doomed.question
        pipeline(config)

        failed = catalog.query("SELECT * FROM failures WHERE stage = 'collect-shard'")
        assert [f["error_class"] for f in failed] == ["GenerationError"]
        assert failed[0]["item_id"].startswith(doomed.id) and "HTTP 422" in failed[0]["message"]
        shard = failed[0]["artifact_id"]
        before = stamps(store, catalog)

        outage.clear()  # the model is back
        assert main(["failures", "--home", str(tmp_path)]) == 0
        assert shard in capsys.readouterr().out  # the listing says which artifact holds each failure
        assert main(["retry", shard, "--home", str(tmp_path)]) == 0
        out = capsys.readouterr().out

    after = stamps(store, catalog)
    rebuilt = {aid for aid in before if after[aid] != before[aid]}
    rebuilt_stages = sorted(row["stage"] for row in catalog.artifacts() if row["id"] in rebuilt)
    assert rebuilt_stages == [
        "annotate",
        "annotate-shard",
        "collect-shard",
        "evaluate",
        "merge-trajectories",
        "select",
        "train",
    ]
    assert set(before) == set(after)  # rebuilt under the same ids: no new artifacts
    assert catalog.query("SELECT * FROM failures WHERE stage = 'collect-shard'") == []
    assert "1 failure before, 0 after" in out
    # Everything was rebuilt consistently: a rerun of the pipeline finds it all in place.
    assert pipeline(config).computed == 0
