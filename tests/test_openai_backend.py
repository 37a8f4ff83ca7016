"""The openai: backend against a real local OpenAI-compatible server that fails some of the time."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from fastapi import Request, Response

from tasks.agent.loop import AgentConfig, run_agent
from tasks.llm.hf import HFGenerator
from tasks.llm.openai_api import OpenAIConfig, OpenAIGenerator, check_openai_spec, parse_openai_spec
from tasks.llm.openai_server import create_app
from tasks.search.tools import SearchTool
from tasks.synthesis.evidence import load_tasks
from tests.test_retriever_server import running


@pytest.fixture(scope="module")
def generator(tiny_model) -> HFGenerator:
    return HFGenerator(tiny_model.uri, device="cpu", batch_size=1)


def flaky_server(generator: HFGenerator, seen: list[str]):
    """Refuses the first two attempts of every request (429, then 500); 'doomed' prompts always 503."""
    app = create_app(generator, "tiny")
    attempts: dict[str, int] = {}

    @app.middleware("http")
    async def flaky(request: Request, call_next):
        body = await request.body()
        attempts[body] = attempts.get(body, 0) + 1
        if b"doomed" in body:
            return Response(status_code=503)
        if attempts[body] == 1:
            return Response(status_code=429, headers={"retry-after": "0"})
        if attempts[body] == 2:
            return Response(status_code=500)
        seen.append(json.loads(body)["messages"][-1]["content"])
        return await call_next(request)

    return app


def test_every_prompt_succeeds_once_through_429_and_500(generator):
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(10)]
    seen: list[str] = []
    with running(flaky_server(generator, seen)) as url:
        client = OpenAIGenerator(
            OpenAIConfig(model="tiny", base_url=f"{url}/v1", max_concurrency=4, backoff_s=0.01)
        )
        results = client.generate([client.render(p) for p in prompts], max_new_tokens=6, stop=("</search>",))
    assert all(r.error is None for r in results)
    assert sorted(seen) == sorted(f"question {i}" for i in range(10))  # each served exactly once
    assert client.requests_sent == 30
    # Position i holds prompt i's completion: the same text the model gives it directly.
    for prompt, result in zip(prompts, results, strict=True):
        (direct,) = generator.generate([generator.render(prompt)], max_new_tokens=6, stop=("</search>",))
        assert result.text == direct.text and result.tokens == direct.tokens


def test_exhausted_retries_are_recorded_as_failures_with_the_reason(generator, index_ref, tasks_ref):
    tasks = load_tasks(tasks_ref, "train")[:3]
    tasks[1] = tasks[1].model_copy(update={"question": "doomed: " + tasks[1].question})
    with running(flaky_server(generator, [])) as url:
        client = OpenAIGenerator(
            OpenAIConfig(model="tiny", base_url=f"{url}/v1", max_retries=2, backoff_s=0.0, max_concurrency=2)
        )
        trajectories, failures = run_agent(
            client,
            SearchTool(index_ref.uri),
            tasks,
            config=AgentConfig(max_turns=2, max_new_tokens=8),
            policy_name="openai:tiny",
        )
    assert len(trajectories) == 3 and len({t.id for t in trajectories}) == 3
    doomed = [f for f in failures if f.error_class == "GenerationError"]
    assert len(doomed) == 1 and doomed[0].item_id.startswith(tasks[1].id)
    assert "HTTP 503" in doomed[0].message
    assert next(t for t in trajectories if t.task_id == tasks[1].id).steps == []


def test_client_errors_are_not_retried(generator):
    with running(create_app(generator, "tiny")) as url:
        client = OpenAIGenerator(OpenAIConfig(model="tiny", base_url=f"{url}/v1", backoff_s=0.0))
        # max_tokens=0 is invalid for the server: a 422 that no retry can fix.
        (result,) = client.generate([client.render([{"role": "user", "content": "x"}])], max_new_tokens=0)
    assert result.error is not None and result.error.startswith("HTTP 422")
    assert client.requests_sent == 1


def _texts_under(root: Path) -> dict[str, str]:
    """Every file's bytes as text, and what Parquet and DuckDB files hold read back as text too:
    both may compress strings, so a secret could be in a file without being in its raw bytes."""
    import duckdb
    import pyarrow.parquet as pq

    texts = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
        if path.suffix == ".parquet":
            texts[f"{path} (rows)"] = json.dumps(pq.read_table(path).to_pylist(), default=str)
        elif path.suffix == ".duckdb":
            with duckdb.connect(str(path), read_only=True) as con:
                tables = [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
                for table in tables:
                    rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
                    texts[f"{path} ({table})"] = json.dumps(rows, default=str)
    return texts


def test_the_api_key_reaches_the_server_and_nothing_logged_or_stored(
    generator, prefect_harness, tmp_path, monkeypatch, caplog, capfd
):
    import prefect.settings
    from prefect.logging.handlers import APILogHandler

    from flows.config import PipelineConfig
    from flows.parts import collection

    secret = f"sk-trailforge-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    app = create_app(generator, "tiny")
    authorizations: list[str | None] = []

    @app.middleware("http")
    async def record(request: Request, call_next):
        authorizations.append(request.headers.get("authorization"))
        return await call_next(request)

    home = tmp_path / "home"
    with running(app) as url:
        teacher = f"openai:tiny@{url}/v1"
        config = PipelineConfig.model_validate(
            {
                "home": str(home),
                "policy": {"spec": "hf:tiny"},
                "synthesis": {"train_tasks": 2, "eval_tasks": 2},
                "collect": {
                    "samples_per_task": 1,
                    "shard_size": 2,
                    "teacher": teacher,
                    "agent": {"max_turns": 1, "max_new_tokens": 8},
                },
            }
        )
        made = collection(config)
    assert made["trajectories"]
    APILogHandler().flush()
    assert authorizations and set(authorizations) == {f"Bearer {secret}"}  # the key was in use

    stored = _texts_under(home)
    database = Path(prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///")[-1])
    prefect_db = _texts_under(database.parent)  # flow run parameters and logs, WAL included
    out, err = capfd.readouterr()
    logged = {"caplog": caplog.text, "stdout": out, "stderr": err}
    # The scan sees what it should: the teacher spec in the shard's config, rows and catalog,
    # the flow run's parameters in Prefect's database.
    assert any(name.endswith("_meta.json") and teacher in text for name, text in stored.items())
    assert any(name.endswith("(rows)") and teacher in text for name, text in stored.items())
    assert any("(artifacts)" in name and teacher in text for name, text in stored.items())
    assert any(teacher in text for text in prefect_db.values())
    assert caplog.records
    leaks = [name for name, text in {**stored, **prefect_db, **logged}.items() if secret in text]
    assert leaks == []


def test_spec_parsing_and_urls_with_credentials_are_refused(monkeypatch):
    config = parse_openai_spec("openai:qwen3@http://127.0.0.1:9000/v1")
    assert (config.model, config.base_url) == ("qwen3", "http://127.0.0.1:9000/v1")
    assert check_openai_spec("openai:qwen3@http://127.0.0.1:9000/v1?deployment=a") == (
        "openai:qwen3@http://127.0.0.1:9000/v1?deployment=a"
    )
    for spec in (
        "openai:qwen3@http://user:hunter2@127.0.0.1:9000/v1",
        "openai:qwen3@http://hunter2@127.0.0.1:9000/v1",
        "openai:qwen3@https://api.example.com/v1?api_key=hunter2",
        "openai:qwen3@https://api.example.com/v1?x=1&access_token=hunter2",
    ):
        for refuse in (check_openai_spec, parse_openai_spec):
            with pytest.raises(ValueError, match=r"OPENAI_API_KEY instead") as refused:
                refuse(spec)
            assert "hunter2" not in str(refused.value) and "***" in str(refused.value)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://user:hunter2@api.example.com/v1")
    with pytest.raises(ValueError, match="credentials") as refused:
        parse_openai_spec("openai:qwen3")
    assert "hunter2" not in str(refused.value)


def test_a_served_teacher_collects_a_shard_in_place_of_the_policy(
    generator, tiny_model, index_ref, tasks_ref, tmp_path
):
    from storage import ArtifactStore
    from storage.schemas import Trajectory
    from storage.store import read_rows
    from tasks.agent.collect import ShardConfig
    from tasks.stage import execute_stage

    seen: list[str] = []
    with running(flaky_server(generator, seen)) as url:
        teacher = f"openai:tiny@{url}/v1"
        config = ShardConfig(
            shard_index=0, shard_size=2, teacher=teacher, agent={"max_turns": 1, "max_new_tokens": 8}
        )
        shard = execute_stage(
            "collect-shard",
            ArtifactStore(tmp_path),
            config,
            {"model": tiny_model, "tasks": tasks_ref, "index": index_ref},
        )
    trajectories = read_rows(shard, Trajectory)
    assert len(trajectories) == 4 and {t.policy for t in trajectories} == {teacher}
    assert len(seen) == 4  # every rollout's turn went through the server, once
    with pytest.raises(ValueError, match="hf:PATH, vllm:PATH or openai:MODEL@URL"):
        ShardConfig(shard_index=0, shard_size=1, teacher="gpt-4o")
