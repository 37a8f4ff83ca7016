"""Runs stages from a flow: submits the cached Prefect task, then records lineage in the catalog.

Tasks write payloads; only the flow process writes lineage (DESIGN principle 3), so a task may run
on a Dask worker while the catalog stays with the flow.
"""

from __future__ import annotations

import time
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
from tasks.stage import Inputs, get_stage, input_ids, run_stage, stage_artifact_id


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
    future: PrefectFuture
    started: float


@dataclass
class StageRunner:
    store: ArtifactStore
    catalog: Catalog
    flow_run_id: str | None = None
    from_stage: str | None = None
    task_runner: TaskRunner | None = None
    concurrency_limit: str | None = None
    events: list[StageEvent] = field(default_factory=list)
    recomputed: set[str] = field(default_factory=set)
    _last_finished: float = 0.0

    def __call__(
        self, stage: str, config: BaseModel, inputs: Inputs, label: str | None = None
    ) -> ArtifactRef:
        return self.wait(self.submit(stage, config, inputs, label))

    def map(self, stage: str, items: list[tuple[BaseModel, Inputs, str]]) -> list[ArtifactRef]:
        """Submit every (config, inputs, label) at once, so the task runner runs them in parallel."""
        pending = [self.submit(stage, config, inputs, label) for config, inputs, label in items]
        return [self.wait(p) for p in pending]

    def submit(
        self, stage: str, config: BaseModel, inputs: Inputs, label: str | None = None, refresh: bool = False
    ) -> PendingStage:
        task = run_stage.with_options(name=stage, task_run_name=label or stage)
        if refresh or stage == self.from_stage or set(input_ids(inputs).values()) & self.recomputed:
            # --from-stage: this stage and everything downstream of it is built again.
            definition = get_stage(stage)
            aid = stage_artifact_id(definition, definition.config_model.model_validate(config), inputs)
            self.store.remove(definition.kind, aid)
            task = task.with_options(refresh_cache=True)
            if not refresh:
                self.recomputed.add(aid)
        parameters = {
            "name": stage,
            "store_root": str(self.store.root),
            "config": config,
            "inputs": inputs,
            "concurrency_limit": self.concurrency_limit,
        }
        future = self.task_runner.submit(task, parameters) if self.task_runner else task.submit(**parameters)
        return PendingStage(stage, label or stage, config, inputs, future, time.perf_counter())

    def wait(self, pending: PendingStage) -> ArtifactRef:
        pending.future.wait()
        state = pending.future.state
        ref: ArtifactRef = state.result()
        reused = ref.reused or state.name == "Cached"
        if not Path(ref.uri).is_dir():
            # Prefect remembered a result whose artifact was deleted since: build it again.
            retry = self.submit(pending.stage, pending.config, pending.inputs, pending.label, refresh=True)
            retry.future.wait()
            state = retry.future.state
            ref, reused = state.result(), False
        task_run_id = str(state.state_details.task_run_id) if state.state_details.task_run_id else None
        self.catalog.record(
            ref,
            pending.inputs,
            config_json=canonical_json(pending.config),
            nbytes=payload_bytes(ref),
            flow_run_id=self.flow_run_id,
            task_run_id=task_run_id,
        )
        failures = read_rows(ref, Failure, name="failures")
        if failures:
            self.catalog.record_failures(
                [f.model_copy(update={"artifact_id": ref.id}) for f in failures], self.flow_run_id
            )
            publish_failures(failures[0].stage, self.catalog)
        # Stages submitted together finish one after another here: count each from the later of its
        # submission and the previous stage's end, so the times add up to the run's wall time.
        finished = time.perf_counter()
        seconds = finished - max(pending.started, self._last_finished)
        self._last_finished = finished
        self.events.append(StageEvent(pending.label, ref.id, ref.kind, ref.rows, reused, seconds))
        return ref.model_copy(update={"reused": reused})


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
    store = ArtifactStore(home)
    catalog = Catalog(store.catalog_path)
    flow_run_id = str(get_run_context().flow_run.id)
    recorded = parameters.model_dump(mode="json")
    catalog.record_run(flow_run_id, flow_name, recorded, "Running")
    try:
        with make_task_runner(orchestration) as task_runner:
            yield StageRunner(
                store,
                catalog,
                flow_run_id,
                from_stage,
                task_runner=task_runner,
                concurrency_limit=orchestration.concurrency_limit,
            )
    except BaseException:
        catalog.record_run(flow_run_id, flow_name, recorded, "Failed")
        raise
    catalog.record_run(flow_run_id, flow_name, recorded, "Completed")
