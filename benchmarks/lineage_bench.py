"""Lineage catalog benchmark: bulk insert of 100k artifacts with their edges, then ancestry queries.

The graph mimics many pipeline runs: each run is a DAG of artifacts where every artifact has one or
two parents earlier in the same run, so ancestry queries walk 10+ levels as a real round loop does.
Prints one JSON line last: insert_100k_s (target <= 2 s) and ancestors_ms (median query inside one\ncatalog session, target <= 50 ms); open_and_count_ms is what opening the file costs a fresh command.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from storage.catalog import ARTIFACT_SCHEMA, EDGE_SCHEMA, Catalog


def build_graph(n_artifacts: int, run_size: int, seed: int) -> tuple[pa.Table, pa.Table, list[str]]:
    rng = random.Random(seed)
    now = datetime(2026, 1, 1)
    ids = [f"a{i:08d}" for i in range(n_artifacts)]
    parents, children, roles, leaves = [], [], [], []
    for start in range(0, n_artifacts, run_size):
        run = ids[start : start + run_size]
        for pos in range(1, len(run)):
            # A parent a few steps back keeps the DAG deep (depth ~ run_size / 3), like chained stages.
            for parent_pos in {max(0, pos - rng.randint(1, 3)), max(0, pos - rng.randint(1, 6))}:
                parents.append(run[parent_pos])
                children.append(run[pos])
                roles.append("input")
        leaves.append(run[-1])
    artifacts = pa.table(
        {
            "id": ids,
            "kind": ["trajectories"] * n_artifacts,
            "uri": [f"artifacts/trajectories/{i}" for i in ids],
            "stage": ["collect"] * n_artifacts,
            "config_json": ["{}"] * n_artifacts,
            "code_version": ["bench"] * n_artifacts,
            "rows": [100] * n_artifacts,
            "bytes": [1000] * n_artifacts,
            "created_at": [now] * n_artifacts,
            "flow_run_id": [None] * n_artifacts,
            "task_run_id": [None] * n_artifacts,
            "environment_json": ["{}"] * n_artifacts,
        },
        schema=ARTIFACT_SCHEMA,
    )
    edges = pa.table({"parent": parents, "child": children, "role": roles}, schema=EDGE_SCHEMA)
    return artifacts, edges, leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=int, default=100_000)
    parser.add_argument("--run-size", type=int, default=100)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()

    artifacts, edges, leaves = build_graph(args.artifacts, args.run_size, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "lineage.duckdb")
        with catalog.connect():
            pass  # create the schema outside the timed region, as a long-lived catalog has it
        start = time.perf_counter()
        catalog.record_artifacts(artifacts, edges)
        insert_s = time.perf_counter() - start

        start = time.perf_counter()
        counts = catalog.counts()  # a fresh connection: what one CLI command pays once
        connect_ms = (time.perf_counter() - start) * 1000

        rng = random.Random(1)
        timings, depths = [], []
        with catalog.session():
            for leaf in rng.sample(leaves, min(args.queries, len(leaves))):
                start = time.perf_counter()
                rows = catalog.ancestors(leaf)
                timings.append((time.perf_counter() - start) * 1000)
                depths.append(max(r["depth"] for r in rows))

    print(
        json.dumps(
            {
                "insert_100k_s": round(insert_s, 3),
                "ancestors_ms": round(statistics.median(timings), 2),
                "ancestors_p95_ms": round(sorted(timings)[int(0.95 * len(timings)) - 1], 2),
                "open_and_count_ms": round(connect_ms, 2),
                "median_depth": statistics.median(depths),
                "artifacts": counts["artifacts"],
                "edges": counts["edges"],
            }
        )
    )


if __name__ == "__main__":
    main()
