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

from flows.stages import StageRunner
from storage import ArtifactRef, ArtifactStore, Catalog
from tasks.stage import Inputs, get_stage, stage_artifact_id

_LISTED = re.compile(r"^(?P<role>.+)\[(?P<index>\d+)\]$")


class RecipeChanged(RuntimeError):
    """An artifact's recorded ingredients no longer give its id: rebuilding it would be a different
    artifact under an old name, so nothing is touched."""


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
        else:
            single[parent["role"]] = ref
    return {**single, **{role: [refs[i] for i in sorted(refs)] for role, refs in listed.items()}}


def rebuild(artifact_ids: list[str], run: StageRunner) -> list[Rebuilt]:
    """Rebuild these artifacts and their descendants, oldest first; returns what was rebuilt.

    Every artifact's recipe is checked before anything is built: if the code or environment has
    moved since it was recorded, its ingredients give another id, and the whole rebuild is refused
    with every artifact left as it was (rerun the flow instead, which builds the new ids beside the
    old). Each rebuilt version replaces the old only when complete and unread (see the store).
    """
    store, catalog = run.store, run.catalog
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

    plans = []
    for row in rows:
        stage = get_stage(row["stage"])
        config = stage.config_model.model_validate(json.loads(row["config_json"]))
        inputs = recorded_inputs(catalog, row["id"], store)
        if stage_artifact_id(stage, config, inputs) != row["id"]:
            raise RecipeChanged(
                f"{row['id']} ({row['stage']}): its recorded ingredients no longer give its id (the code "
                "or environment changed since it was built); nothing was rebuilt. Rerun the flow instead"
            )
        plans.append((row, config, inputs))

    done = []
    for row, config, inputs in plans:
        before = catalog.query("SELECT count(*) AS n FROM failures WHERE artifact_id = ?", [row["id"]])[0][
            "n"
        ]
        ref = run(row["stage"], config, inputs, f"retry {row['stage']}", replace=True)
        after = catalog.query("SELECT count(*) AS n FROM failures WHERE artifact_id = ?", [ref.id])[0]["n"]
        done.append(Rebuilt(ref.id, row["stage"], before, after))
    return done
