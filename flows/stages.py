"""Runs stages from a flow: submits the cached Prefect task, then records lineage in the catalog.

Tasks write payloads; only the flow process writes lineage (DESIGN principle 3), so a task may run
on a Dask worker while the catalog stays with the flow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

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
class StageRunner:
    store: ArtifactStore
    catalog: Catalog
    flow_run_id: str | None = None
    from_stage: str | None = None
    events: list[StageEvent] = field(default_factory=list)
    recomputed: set[str] = field(default_factory=set)

    def __call__(
        self, stage: str, config: BaseModel, inputs: Inputs, label: str | None = None
    ) -> ArtifactRef:
        started = time.perf_counter()
        task = run_stage.with_options(name=stage, task_run_name=label or stage)
        if stage == self.from_stage or set(input_ids(inputs).values()) & self.recomputed:
            # --from-stage: this stage and everything downstream of it is built again.
            definition = get_stage(stage)
            aid = stage_artifact_id(definition, definition.config_model.model_validate(config), inputs)
            self.store.remove(definition.kind, aid)
            task = task.with_options(refresh_cache=True)
            self.recomputed.add(aid)
        state = task(stage, str(self.store.root), config, inputs, return_state=True)
        ref: ArtifactRef = state.result()
        reused = ref.reused or state.name == "Cached"
        if not Path(ref.uri).is_dir():
            # Prefect remembered a result whose artifact was deleted since: build it again.
            state = task.with_options(refresh_cache=True)(
                stage, str(self.store.root), config, inputs, return_state=True
            )
            ref, reused = state.result(), False
        task_run_id = str(state.state_details.task_run_id) if state.state_details.task_run_id else None
        self.catalog.record(
            ref,
            inputs,
            config_json=canonical_json(config),
            nbytes=_size(ref),
            flow_run_id=self.flow_run_id,
            task_run_id=task_run_id,
        )
        failures = read_rows(ref, Failure, name="failures")
        if failures:
            self.catalog.record_failures(
                [f.model_copy(update={"artifact_id": ref.id}) for f in failures], self.flow_run_id
            )
        self.events.append(
            StageEvent(label or stage, ref.id, ref.kind, ref.rows, reused, time.perf_counter() - started)
        )
        return ref.model_copy(update={"reused": reused})


def _size(ref: ArtifactRef) -> int:
    return sum(p.stat().st_size for p in Path(ref.uri).rglob("*") if p.is_file())
