"""The one way an artifact is built and recorded: a :class:`StageRunner`.

Every flow, ``trailforge retry``, corpus ingestion and the refresh flow build artifacts through it,
so each artifact gets the same bookkeeping wherever it came from: its catalog row (with the code
version and environment its id covers), its edges, its failures, and the run that made it.

Tasks write payloads; only the flow process writes lineage (DESIGN principle 3), so a task may run
on a Dask worker while the catalog stays with the flow. Outside a flow (the CLI's ingestion and
retry) the runner builds in process, with no Prefect server involved.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from pydantic import BaseModel

from flows.orchestration import OrchestrationConfig, check_concurrency_limit, make_task_runner
from storage import ArtifactRef, ArtifactStore, Catalog, canonical_json
from storage.schemas import Failure
from storage.store import read_rows
from tasks.stage import Inputs, execute_stage, input_ids, run_stage


@dataclass
class StageEvent:
    stage: str
    artifact_id: str
    kind: str
    rows: int
    reused: bool
    seconds: float


@dataclass
class PendingStage:
    """A stage handed to the task runner; :meth:`StageRunner.wait` records it once it finishes."""

    stage: str
    label: str
    config: BaseModel
    inputs: Inputs
    future: PrefectFuture | None
    started: float
    replace: bool = False
    built: ArtifactRef | None = None  # set when the runner built it in process


@dataclass
class StageRunner:
    store: ArtifactStore
    catalog: Catalog
    flow_run_id: str | None = None
    from_stage: str | None = None
    task_runner: TaskRunner | None = None
    concurrency_limit: str | None = None
    in_process: bool = False  # build with execute_stage here, not through Prefect (CLI commands)
    events: list[StageEvent] = field(default_factory=list)
    recomputed: set[str] = field(default_factory=set)
    _last_finished: float = 0.0

    def __call__(
        self, stage: str, config: BaseModel, inputs: Inputs, label: str | None = None, replace: bool = False
    ) -> ArtifactRef:
        return self.wait(self.submit(stage, config, inputs, label, replace))

    def map(self, stage: str, items: list[tuple[BaseModel, Inputs, str]]) -> list[ArtifactRef]:
        """Submit every (config, inputs, label) at once, so the task runner runs them in parallel."""
        pending = [self.submit(stage, config, inputs, label) for config, inputs, label in items]
        return [self.wait(p) for p in pending]

    def submit(
        self, stage: str, config: BaseModel, inputs: Inputs, label: str | None = None, replace: bool = False
    ) -> PendingStage:
        """Hand a stage to the task runner; ``replace`` builds it again under the same id.

        ``--from-stage`` replaces that stage and everything built from what it replaced. A replaced
        artifact is swapped for its new version only when that is complete and no stage reads it.
        """
        replace = (
            replace or stage == self.from_stage or bool(set(input_ids(inputs).values()) & self.recomputed)
        )
        started = time.perf_counter()
        if self.in_process:
            ref = execute_stage(stage, self.store, config, inputs, replace=replace)
            return PendingStage(stage, label or stage, config, inputs, None, started, replace, ref)
        task = run_stage.with_options(name=stage, task_run_name=label or stage)
        if replace:
            task = task.with_options(refresh_cache=True)
        parameters = {
            "name": stage,
            "store_root": str(self.store.root),
            "config": config,
            "inputs": inputs,
            "concurrency_limit": self.concurrency_limit,
            "replace": replace,
        }
        future = self.task_runner.submit(task, parameters) if self.task_runner else task.submit(**parameters)
        return PendingStage(stage, label or stage, config, inputs, future, started, replace)

    def wait(self, pending: PendingStage) -> ArtifactRef:
        task_run_id = None
        if pending.built is not None:
            ref, reused = pending.built, pending.built.reused
        else:
            pending.future.wait()
            state = pending.future.state
            ref = state.result()
            reused = ref.reused or state.name == "Cached"
            if not Path(ref.uri).is_dir():
                # Prefect remembered a result whose artifact was deleted since: build it again.
                retry = self.submit(
                    pending.stage, pending.config, pending.inputs, pending.label, replace=True
                )
                retry.future.wait()
                state = retry.future.state
                ref, reused = state.result(), False
            task_run_id = str(state.state_details.task_run_id) if state.state_details.task_run_id else None
        if pending.replace:
            self.recomputed.add(ref.id)
        self.record(ref, pending.inputs, pending.config, task_run_id, replaced=pending.replace)
        # Stages submitted together finish one after another here: count each from the later of its
        # submission and the previous stage's end, so the times add up to the run's wall time.
        finished = time.perf_counter()
        seconds = finished - max(pending.started, self._last_finished)
        self._last_finished = finished
        self.events.append(StageEvent(pending.label, ref.id, ref.kind, ref.rows, reused, seconds))
        return ref.model_copy(update={"reused": reused})

    def record(
        self,
        ref: ArtifactRef,
        inputs: Inputs,
        config: BaseModel,
        task_run_id: str | None = None,
        replaced: bool = False,
    ) -> None:
        """The artifact's catalog row and edges, and its failures in place of any older ones."""
        meta = self.store.meta(ref)
        self.catalog.record(
            ref,
            inputs,
            config_json=canonical_json(meta.get("config", config)),  # the config as the id covers it
            nbytes=payload_bytes(ref),
            flow_run_id=self.flow_run_id,
            task_run_id=task_run_id,
            code_version=meta.get("code_version", ""),
            environment_json=json.dumps(meta.get("environment", {}), sort_keys=True),
        )
        if replaced:
            self.catalog.update_payload(ref, payload_bytes(ref))
        failures = [f.model_copy(update={"artifact_id": ref.id}) for f in read_rows(ref, Failure, "failures")]
        if failures or replaced:
            self.catalog.replace_failures(ref.id, failures, self.flow_run_id)
        if failures and not self.in_process:
            publish_failures(failures[0].stage, self.catalog)


def publish_failures(stage: str, catalog: Catalog) -> None:
    """The stage's item-level failures as a Prefect table artifact, so the UI lists them per stage."""
    from prefect.artifacts import create_table_artifact

    rows = catalog.query(
        "SELECT item_id, error_class, message, artifact_id, created_at FROM failures WHERE stage = ? "
        "ORDER BY created_at DESC LIMIT 500",
        [stage],
    )
    table = [{**row, "message": row["message"][:300], "created_at": str(row["created_at"])} for row in rows]
    create_table_artifact(
        table, key=f"failures-{stage}", description=f"Item-level failures of {stage} (newest 500)"
    )


def payload_bytes(ref: ArtifactRef) -> int:
    return sum(p.stat().st_size for p in Path(ref.uri).rglob("*") if p.is_file())


@contextmanager
def stage_runner(
    flow_name: str,
    parameters: BaseModel,
    home: str | None,
    orchestration: OrchestrationConfig,
    from_stage: str | None = None,
) -> Iterator[StageRunner]:
    """A runner for the current flow run: its task runner started, the run recorded in the catalog.

    The run's row goes Running -> Completed or Failed, so ``trailforge runs`` matches the UI even for
    runs that never reached Prefect's own bookkeeping (a crash mid-flow).
    """
    from prefect.context import get_run_context

    check_concurrency_limit(orchestration.concurrency_limit)
    flow_run_id = str(get_run_context().flow_run.id)
    with recorded_run(flow_name, parameters, home, flow_run_id) as (store, catalog):
        with make_task_runner(orchestration) as task_runner:
            yield StageRunner(
                store,
                catalog,
                flow_run_id,
                from_stage,
                task_runner=task_runner,
                concurrency_limit=orchestration.concurrency_limit,
            )


@contextmanager
def local_stage_runner(command: str, parameters: BaseModel | dict, home: str | None) -> Iterator[StageRunner]:
    """A runner that builds in this process, for CLI commands that need no Prefect server."""
    run_id = f"local-{uuid.uuid4()}"
    with recorded_run(command, parameters, home, run_id) as (store, catalog):
        yield StageRunner(store, catalog, run_id, in_process=True)


@contextmanager
def recorded_run(
    name: str, parameters: BaseModel | dict, home: str | None, run_id: str
) -> Iterator[tuple[ArtifactStore, Catalog]]:
    """The run's catalog row goes Running -> Completed or Failed; killed writers' leftovers are swept."""
    store = ArtifactStore(home)
    catalog = Catalog(store.catalog_path)
    store.sweep_tmp()
    recorded = parameters.model_dump(mode="json") if isinstance(parameters, BaseModel) else parameters
    catalog.record_run(run_id, name, recorded, "Running")
    try:
        yield store, catalog
    except BaseException:
        catalog.record_run(run_id, name, recorded, "Failed")
        raise
    catalog.record_run(run_id, name, recorded, "Completed")
