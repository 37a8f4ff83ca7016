"""Shared fixtures: one Prefect test harness for the whole run, one tiny model, one small world."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest  # noqa: E402

from storage import ArtifactStore  # noqa: E402
from tasks.corpus.world import WorldConfig  # noqa: E402
from tasks.llm.models import BaseModelConfig  # noqa: E402
from tasks.search.index import IndexConfig  # noqa: E402
from tasks.stage import execute_stage  # noqa: E402
from tasks.synthesis.stage import SynthesisConfig  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and database for every flow test (starting one takes ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> ArtifactStore:
    return ArtifactStore(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def world_ref(shared_store):
    return execute_stage("world", shared_store, WorldConfig(), {})


@pytest.fixture(scope="session")
def index_ref(shared_store, world_ref):
    return execute_stage("index", shared_store, IndexConfig(), {"corpus": world_ref})


@pytest.fixture(scope="session")
def tasks_ref(shared_store, world_ref, index_ref):
    return execute_stage(
        "synthesize",
        shared_store,
        SynthesisConfig(train_tasks=8, eval_tasks=4, mix={"h2-k1-m2": 1}),  # two-hop chains
        {"world": world_ref, "index": index_ref},
    )


@pytest.fixture(scope="session")
def tiny_model(shared_store):
    """A randomly initialised two-layer Llama with SmolLM2's tokenizer and Trailforge's template."""
    return execute_stage("base-model", shared_store, BaseModelConfig(spec="hf:tiny"), {})


@pytest.fixture(scope="session")
def tool(index_ref):
    """The search tool over the shared index."""
    from tasks.search.tools import SearchTool

    return SearchTool(index_ref.uri)


@pytest.fixture(scope="session")
def two_tasks(tasks_ref):
    from tasks.synthesis.evidence import load_tasks

    return load_tasks(tasks_ref, "train")[:2]
