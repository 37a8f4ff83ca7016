"""Why an artifact is (or would be) reused or recomputed, from its id's own ingredients.

An artifact id is a digest of (stage, config, input ids, code version, environment). Explaining one means
recomputing that digest from what the catalog recorded, checking the payload is in the store, and
walking the inputs: an artifact is reused exactly when its payload is present and every
ingredient is unchanged; otherwise the first thing that differs is the reason it would be rebuilt.
"""

from __future__ import annotations

import json

from storage import ArtifactStore, Catalog, artifact_id
from tasks.stage import get_stage


def explain(artifact: str, store: ArtifactStore, catalog: Catalog) -> list[str]:
    with catalog.session():
        found = catalog.query("SELECT * FROM artifacts WHERE id = ?", [artifact])
        if not found:
            return [f"no artifact {artifact!r} in the catalog at {catalog.path}"]
        row = found[0]
        parents = catalog.query(
            "SELECT e.parent, e.role, a.kind, a.stage FROM edges e LEFT JOIN artifacts a ON a.id = e.parent "
            "WHERE e.child = ? ORDER BY e.role",
            [artifact],
        )
        produced_by = catalog.query("SELECT * FROM runs WHERE flow_run_id = ?", [row["flow_run_id"]])
        history = catalog.versions_of(artifact)

    config = json.loads(row["config_json"])
    environment = json.loads(row.get("environment_json") or "{}")
    inputs = {p["role"]: p["parent"] for p in parents}
    lines = [
        f"{artifact}: {row['kind']} from stage {row['stage']!r}, {row['rows']} rows, "
        f"created {row['created_at']:%Y-%m-%d %H:%M:%S}"
        + (f" by flow run {produced_by[0]['flow_run_id']}" if produced_by else ""),
        "its id is the digest of:",
        f"  stage         {row['stage']}",
        f"  config        {json.dumps(config, sort_keys=True)[:300]}",
        f"  code version  {row['code_version']}  (a digest of the source the stage runs)",
        f"  environment   {json.dumps(environment, sort_keys=True)}",
    ]
    for p in parents:
        lines.append(f"  input {p['role']:8s}{p['parent']}  ({p['kind']} from {p['stage']})")
    lines += [
        f"  supersedes    {older}  (an earlier version; history, not an input)"
        for older in history["supersedes"]
    ]
    lines += [f"  superseded by {newer}" for newer in history["superseded_by"]]

    reasons = []
    if artifact_id(row["stage"], config, inputs, row["code_version"], environment) != artifact:
        reasons.append("its recorded ingredients do not give its id (recorded by another Trailforge version)")
    current = get_stage(row["stage"]).code_version
    if row["code_version"] != current:
        reasons.append(
            f"the code of stage {row['stage']!r} changed ({row['code_version']} -> {current}): a new id"
        )
    if not store.exists(row["kind"], artifact):
        reasons.append(f"its payload is missing from the store ({store.path(row['kind'], artifact)})")
    for p in parents:
        if p["kind"] and not store.exists(p["kind"], p["parent"]):
            reasons.append(
                f"input {p['role']} ({p['parent']}) is missing from the store and is rebuilt first"
            )
    if reasons:
        lines.append("a run with the same parameters would recompute it:")
        lines += [f"  - {reason}" for reason in reasons]
    else:
        lines.append(
            "a run with the same parameters reuses it: the payload is in the store and stage, config, "
            "inputs and code version all give this id. Changing any of them gives a new id and a new "
            "artifact; its descendants (trailforge lineage) follow."
        )
    return lines
