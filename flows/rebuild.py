"""Retry failed items: rebuild one artifact from its recorded ingredients, and what depends on it.

An item that failed for a passing reason (a served model that gave up, a retriever that timed out)
sits in the artifact that holds it, a collection shard say. Retrying it means running that one
artifact again, under the same id (its stage, config and inputs have not changed), and then every
artifact downstream of it in lineage, because their content was computed from the old one. Nothing
else is touched: the rest of the pipeline stays as it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from flows.stages import payload_bytes
from storage import ArtifactRef, ArtifactStore, Catalog
from storage.schemas import Failure
from storage.store import read_rows
from tasks.stage import Inputs, execute_stage

_LISTED = re.compile(r"^(?P<role>.+)\[(?P<index>\d+)\]$")


@dataclass(frozen=True)
class Rebuilt:
    artifact_id: str
    stage: str
    failures_before: int
    failures_after: int


def recorded_inputs(catalog: Catalog, artifact_id: str, store: ArtifactStore) -> Inputs:
    """The inputs an artifact was built from, as the stage took them (``role[i]`` back to lists)."""
    parents = catalog.query(
        "SELECT e.parent, e.role, a.kind FROM edges e JOIN artifacts a ON a.id = e.parent WHERE e.child = ?",
        [artifact_id],
    )
    single: dict[str, ArtifactRef] = {}
    listed: dict[str, dict[int, ArtifactRef]] = {}
    for parent in parents:
        if not store.exists(parent["kind"], parent["parent"]):
            raise ValueError(
                f"input {parent['role']} ({parent['parent']}) of {artifact_id} is not in the store"
            )
        ref = store.ref(parent["kind"], parent["parent"], reused=True)
        if match := _LISTED.match(parent["role"]):
            listed.setdefault(match["role"], {})[int(match["index"])] = ref
        elif parent["role"] != "supersedes":  # a refresh's history edge, not an input
            single[parent["role"]] = ref
    return {**single, **{role: [refs[i] for i in sorted(refs)] for role, refs in listed.items()}}


def rebuild(artifact_ids: list[str], store: ArtifactStore, catalog: Catalog) -> list[Rebuilt]:
    """Rebuild these artifacts and their descendants, oldest first; returns what was rebuilt."""
    wanted = set(artifact_ids)
    for artifact_id in artifact_ids:
        wanted |= {row["id"] for row in catalog.descendants(artifact_id)}
    rows = catalog.query(
        f"SELECT * FROM artifacts WHERE id IN ({', '.join('?' * len(wanted))}) ORDER BY created_at",
        sorted(wanted),
    )
    missing = set(artifact_ids) - {row["id"] for row in rows}
    if missing:
        raise ValueError(f"no artifact {', '.join(sorted(missing))} in the catalog at {catalog.path}")

    done = []
    for row in rows:
        inputs = recorded_inputs(catalog, row["id"], store)
        config = json.loads(row["config_json"])
        before = catalog.query("SELECT count(*) AS n FROM failures WHERE artifact_id = ?", [row["id"]])[0][
            "n"
        ]
        store.remove(row["kind"], row["id"])
        ref = execute_stage(row["stage"], store, config, inputs)
        if ref.id != row["id"]:
            raise RuntimeError(
                f"{row['id']} rebuilt as {ref.id}: its recorded ingredients no longer give its id "
                "(recorded by another Trailforge version); rerun the flow instead"
            )
        failures = [f.model_copy(update={"artifact_id": ref.id}) for f in read_rows(ref, Failure, "failures")]
        catalog.replace_failures(ref.id, failures)
        catalog.update_payload(ref, payload_bytes(ref))
        done.append(Rebuilt(ref.id, row["stage"], before, len(failures)))
    return done
