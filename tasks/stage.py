"""One Prefect task that runs any pipeline stage as a content-addressed, cached step.

A stage is a plain function ``produce(work_dir, config, inputs, store)`` that writes its payload
into ``work_dir``. ``run_stage`` computes the artifact id from (stage, config, input ids, code
version, environment); if the store holds it, nothing runs. The code version is a digest of the
source the stage reaches (:mod:`storage.code_digest`); the environment holds what changes a result
but is not a parameter: the numeric precision this host runs a model in, the digest of the prompt
format a model is prompted with, the bytes behind a local model path. Otherwise the stage writes into a private directory
that is renamed into place only when it finishes, so a killed run leaves nothing half-written and
a rerun picks up exactly where it stopped.

The Prefect task uses the same id as its cache key (plus the store root, so two stores never share
results), so rerunning a flow shows finished stages as ``Cached`` in the UI without running them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext
from pydantic import BaseModel

from storage import ArtifactRef, ArtifactStore, artifact_id, canonical_json
from tasks.stage_spec import Environment, Inputs, Produce, Stage

__all__ = ["Environment", "Inputs", "Produce", "Stage", "execute_stage", "get_stage", "run_stage"]


@dataclass(frozen=True)
class Identity:
    """Everything an artifact id is the digest of, as recorded beside the artifact."""

    artifact_id: str
    code_version: str
    environment: dict[str, Any]


# Stage name -> "module:attribute" of its Stage, imported on first use so the CLI stays fast.
STAGES: dict[str, str] = {
    "world": "tasks.corpus.world:STAGE",
    "corpus": "tasks.corpus.user:STAGE",
    "index": "tasks.search.index:STAGE",
    "synthesize": "tasks.synthesis.stage:STAGE",
    "synthesize-corpus": "tasks.synthesis.corpus_stage:STAGE",
    "extend-pool": "tasks.synthesis.pool:STAGE",
    "base-model": "tasks.llm.models:STAGE",
    "collect-shard": "tasks.agent.collect:SHARD_STAGE",
    "collect-oracle": "tasks.agent.oracle:STAGE",
    "merge-trajectories": "tasks.agent.collect:MERGE_STAGE",
    "annotate-shard": "tasks.judge.annotate:SHARD_STAGE",
    "annotate": "tasks.judge.annotate:STAGE",
    "select": "tasks.select.rejection:STAGE",
    "demonstrations": "tasks.select.demonstrations:STAGE",
    "train": "tasks.train.sft:STAGE",
    "evaluate": "tasks.evaluate.summary:STAGE",
    "rubric-trees": "tasks.rubrics.stage:TREES_STAGE",
    "rubric-pairs": "tasks.rubrics.stage:PAIRS_STAGE",
    "rubric-audit": "tasks.rubrics.stage:AUDIT_STAGE",
    "evaluate-served": "tasks.evaluate.served:STAGE",
    "questions": "tasks.corpus.questions:STAGE",
}


def get_stage(name: str) -> Stage:
    try:
        module_name, attribute = STAGES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}") from None
    return getattr(importlib.import_module(module_name), attribute)


def input_ids(inputs: Inputs) -> dict[str, str]:
    """Input ids by role; a role with several inputs keys them as role[0], role[1], ..."""
    ids: dict[str, str] = {}
    for role, value in inputs.items():
        if isinstance(value, ArtifactRef):
            ids[role] = value.id
        else:
            ids.update({f"{role}[{i}]": ref.id for i, ref in enumerate(value)})
    return ids


def config_for_id(config: BaseModel) -> BaseModel:
    """The config as its id sees it: fields that cannot change the result reset to their defaults.

    A config model may define ``for_id()`` for that (refine settings in plain mode, a temperature no
    sample uses), so settings that do nothing never split one result across two ids.
    """
    for_id = getattr(config, "for_id", None)
    return for_id() if callable(for_id) else config


def stage_identity(stage: Stage, config: BaseModel, inputs: Inputs) -> Identity:
    config = config_for_id(config)
    environment = stage.environment(config, inputs) if stage.environment else {}
    version = stage.code_version
    return Identity(
        artifact_id(stage.name, config, input_ids(inputs), version, environment), version, environment
    )


def stage_artifact_id(stage: Stage, config: BaseModel, inputs: Inputs) -> str:
    return stage_identity(stage, config, inputs).artifact_id


# Stages that run a model: they hold a slot of the flow's global concurrency limit, if one is set.
MODEL_STAGES = frozenset({"collect-shard", "annotate-shard", "evaluate", "evaluate-served", "train"})
# Rubric stages may run a model (a tree builder, writer or auditor spec), so they hold a slot too.
MODEL_STAGES |= {"rubric-trees", "rubric-pairs", "rubric-audit"}


def execute_stage(
    name: str,
    store: ArtifactStore,
    config: BaseModel | Mapping,
    inputs: Inputs,
    concurrency_limit: str | None = None,
    replace: bool = False,
) -> ArtifactRef:
    """Run a stage unless its artifact exists; return the reference either way.

    ``replace`` builds it again under the same id (a retry of failed items): the new version takes
    the old one's place only once it is complete, and only while no stage is reading the old one.

    ``concurrency_limit`` names a Prefect global concurrency limit; a model stage holds one slot
    of it while it computes (not while it is a cache hit), so N shards share a server of N slots.
    """
    stage = get_stage(name)
    config = stage.config_model.model_validate(config)
    identity = stage_identity(stage, config, inputs)
    aid = identity.artifact_id
    if store.exists(stage.kind, aid) and not replace:
        return store.ref(stage.kind, aid, reused=True)
    guard = contextlib.nullcontext()
    if concurrency_limit and name in MODEL_STAGES:
        from prefect.concurrency.sync import concurrency

        guard = concurrency(concurrency_limit, occupy=1, strict=True)
    recipe = {"code_version": identity.code_version, "environment": identity.environment}
    recorded = canonical_json(config_for_id(config))
    with (
        guard,
        store.reading(input_refs(inputs)),
        store.writing(stage.kind, aid, stage.name, recorded, recipe, replace=replace) as work,
    ):
        stage.produce(work, config, inputs, store)
    return store.ref(stage.kind, aid, reused=False)


def input_refs(inputs: Inputs) -> list[ArtifactRef]:
    return [
        ref for value in inputs.values() for ref in ([value] if isinstance(value, ArtifactRef) else value)
    ]


def stage_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    stage = get_stage(parameters["name"])
    config = stage.config_model.model_validate(parameters["config"])
    aid = stage_artifact_id(stage, config, parameters["inputs"])
    root = hashlib.sha256(str(Path(parameters["store_root"]).resolve()).encode()).hexdigest()[:8]
    return f"trailforge-{stage.name}-{aid}-{root}"


def retry_transient_only(task, task_run, state) -> bool:
    """Prefect retries a stage only for errors that may pass: I/O, timeouts, a busy catalog.

    A deterministic failure (a bad config, an empty selection, a bug) would fail the same way again,
    after redoing minutes of work; it is reported at once instead.
    """
    try:
        state.result()
    except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
        return not isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError)
    except Exception as exc:
        return type(exc).__name__ in {"CatalogLockTimeout", "ArtifactInUse", "TransportError"}
    return False


@task(
    cache_key_fn=stage_cache_key,
    persist_result=True,
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_transient_only,
)
def run_stage(
    name: str,
    store_root: str,
    config: Any,
    inputs: Inputs,
    concurrency_limit: str | None = None,
    replace: bool = False,
) -> ArtifactRef:
    """The Prefect face of :func:`execute_stage`; flows give it a per-stage name with ``with_options``."""
    return execute_stage(name, ArtifactStore(store_root), config, inputs, concurrency_limit, replace)
