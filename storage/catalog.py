"""DuckDB lineage catalog: artifacts, the edges between them, flow runs and item-level failures.

Several processes may record into one catalog (served deployments run each flow in a subprocess),
and DuckDB lets only one process hold a database file open for writing. So every operation opens a
connection, runs one short transaction and closes it, retrying with backoff while another process
holds the lock. Writes are idempotent (``ON CONFLICT DO NOTHING``), so a retried or resumed run never
duplicates a row.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from storage.schemas import ArtifactRef, Failure

SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    id VARCHAR PRIMARY KEY, kind VARCHAR, uri VARCHAR, stage VARCHAR, config_json VARCHAR,
    code_version VARCHAR, rows BIGINT, bytes BIGINT, created_at TIMESTAMP,
    flow_run_id VARCHAR, task_run_id VARCHAR
);
ALTER TABLE artifacts ADD COLUMN IF NOT EXISTS environment_json VARCHAR;
CREATE TABLE IF NOT EXISTS edges (
    parent VARCHAR, child VARCHAR, role VARCHAR,
    -- 64-bit keys of the ids (see id_key): ancestry walks join on these, about twice as fast as on
    -- strings. They are computed by Trailforge, never by DuckDB's hash(), whose values may change
    -- between DuckDB versions and would silently break walks over an older catalog.
    parent_key UBIGINT, child_key UBIGINT,
    PRIMARY KEY (parent, child, role)
);
-- A newer version of the same source (a refreshed corpus) supersedes an older one: history, not
-- an input, so it is kept apart from the edges that ids and rebuilds are made from.
CREATE TABLE IF NOT EXISTS versions (
    older VARCHAR, newer VARCHAR, created_at TIMESTAMP, PRIMARY KEY (older, newer)
);
CREATE TABLE IF NOT EXISTS settings (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    flow_run_id VARCHAR PRIMARY KEY, flow_name VARCHAR, parameters_json VARCHAR, state VARCHAR,
    started_at TIMESTAMP, ended_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS failures (
    stage VARCHAR, item_id VARCHAR, artifact_id VARCHAR, error_class VARCHAR, message VARCHAR,
    raw_output VARCHAR, attempts INTEGER, flow_run_id VARCHAR, created_at TIMESTAMP,
    PRIMARY KEY (stage, item_id, artifact_id)
);
"""
EDGE_KEY_SCHEME = "md5-u64-v1"


def id_key(artifact_id: str) -> int:
    """A stable 64-bit key of an id: the first 8 bytes of its MD5, big-endian."""
    return int.from_bytes(hashlib.md5(artifact_id.encode()).digest()[:8], "big")


ARTIFACT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("kind", pa.string()),
        ("uri", pa.string()),
        ("stage", pa.string()),
        ("config_json", pa.string()),
        ("code_version", pa.string()),
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("created_at", pa.timestamp("us")),
        ("flow_run_id", pa.string()),
        ("task_run_id", pa.string()),
        ("environment_json", pa.string()),
    ]
)
EDGE_SCHEMA = pa.schema([("parent", pa.string()), ("child", pa.string()), ("role", pa.string())])
KEYED_EDGE_SCHEMA = pa.schema(
    [*EDGE_SCHEMA, pa.field("parent_key", pa.uint64()), pa.field("child_key", pa.uint64())]
)


def keyed_edges(edges: pa.Table) -> pa.Table:
    parents, children = edges.column("parent").to_pylist(), edges.column("child").to_pylist()
    return pa.table(
        {
            "parent": parents,
            "child": children,
            "role": edges.column("role"),
            "parent_key": pa.array([id_key(p) for p in parents], pa.uint64()),
            "child_key": pa.array([id_key(c) for c in children], pa.uint64()),
        },
        schema=KEYED_EDGE_SCHEMA,
    )


_LOCK_MARKERS = ("lock", "conflicting", "being used by another process")


class CatalogLockTimeout(RuntimeError):
    pass


class Catalog:
    """Lineage catalog in one DuckDB file; safe to use from several processes at once."""

    def __init__(self, path: str | Path, lock_timeout_s: float = 120.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._thread_lock = threading.RLock()
        self._schema_ready = False
        self._session: duckdb.DuckDBPyConnection | None = None

    @contextmanager
    def session(self) -> Iterator[Catalog]:
        """Hold one connection for a burst of queries (a lineage tree, a report).

        Opening the file costs ~20 ms; a burst of reads inside one session pays it once. Other
        processes wait for the session to end, so keep it short.
        """
        with self.connect() as con:
            self._session = con
            try:
                yield self
            finally:
                self._session = None

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A connection, waiting (with jittered backoff) while another process holds the file."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.Error as exc:
                if not any(m in str(exc).lower() for m in _LOCK_MARKERS):
                    raise
                if time.monotonic() > deadline:
                    raise CatalogLockTimeout(
                        f"catalog {self.path} stayed locked for {self.lock_timeout_s}s"
                    ) from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    def _ensure_schema(self) -> None:
        """Create the file and tables once, under an exclusive lock on a sidecar file.

        Without it, processes that open a catalog file that does not exist yet can each create
        it: the first records of all but one of them are then lost (seen: 1 run in 40 with 4
        processes starting together).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as sidecar:
            fcntl.flock(sidecar, fcntl.LOCK_EX)
            try:
                con = self._open()
                try:
                    con.execute(SCHEMA)
                    _rekey_edges(con)
                finally:
                    con.close()
            finally:
                fcntl.flock(sidecar, fcntl.LOCK_UN)
        self._schema_ready = True

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One short-lived connection; waits (with jittered backoff) while another process writes."""
        if self._session is not None:
            with self._thread_lock:
                yield self._session
            return
        with self._thread_lock:
            if not self._schema_ready:
                self._ensure_schema()
            con = self._open()
            try:
                yield con
            finally:
                con.close()

    # --- writes ----------------------------------------------------------------------------------

    def record_artifacts(self, artifacts: pa.Table, edges: pa.Table | None = None) -> None:
        """Bulk insert through Arrow; existing ids and edges are left as they are."""
        with self.connect() as con:
            con.execute("BEGIN")
            con.register("new_artifacts", artifacts)
            con.execute("INSERT INTO artifacts SELECT * FROM new_artifacts ON CONFLICT DO NOTHING")
            if edges is not None and edges.num_rows:
                con.register("new_edges", keyed_edges(edges))
                con.execute(
                    "INSERT INTO edges SELECT DISTINCT parent, child, role, parent_key, child_key "
                    "FROM new_edges ON CONFLICT DO NOTHING"
                )
            con.execute("COMMIT")

    def record(
        self,
        ref: ArtifactRef,
        parents: Mapping[str, ArtifactRef | Iterable[ArtifactRef]] | None = None,
        *,
        config_json: str = "{}",
        nbytes: int = 0,
        flow_run_id: str | None = None,
        task_run_id: str | None = None,
        code_version: str = "",
        environment_json: str = "{}",
    ) -> None:
        """Record one artifact and its edges from its parents (by role)."""
        artifact = pa.Table.from_pylist(
            [
                {
                    "id": ref.id,
                    "kind": ref.kind,
                    "uri": ref.uri,
                    "stage": ref.stage,
                    "config_json": config_json,
                    "code_version": code_version,
                    "rows": ref.rows,
                    "bytes": nbytes,
                    "created_at": datetime.now(UTC).replace(tzinfo=None),
                    "flow_run_id": flow_run_id,
                    "task_run_id": task_run_id,
                    "environment_json": environment_json,
                }
            ],
            schema=ARTIFACT_SCHEMA,
        )
        edge_rows = []
        for role, value in (parents or {}).items():
            if isinstance(value, ArtifactRef):
                edge_rows.append({"parent": value.id, "child": ref.id, "role": role})
                continue
            # Several inputs in one role keep their order (role[0], role[1], ...): it is part of the id.
            for i, parent in enumerate(value):
                edge_rows.append({"parent": parent.id, "child": ref.id, "role": f"{role}[{i}]"})
        self.record_artifacts(artifact, pa.Table.from_pylist(edge_rows, schema=EDGE_SCHEMA))

    def record_version(self, older: str, newer: str) -> None:
        """``newer`` supersedes ``older`` (a refreshed corpus): history, not an input."""
        with self.connect() as con:
            con.execute(
                "INSERT INTO versions VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [older, newer, datetime.now(UTC).replace(tzinfo=None)],
            )

    def versions_of(self, artifact_id: str) -> dict[str, list[str]]:
        """The versions this artifact superseded and those that superseded it."""
        older = self.query("SELECT older FROM versions WHERE newer = ? ORDER BY created_at", [artifact_id])
        newer = self.query("SELECT newer FROM versions WHERE older = ? ORDER BY created_at", [artifact_id])
        return {"supersedes": [r["older"] for r in older], "superseded_by": [r["newer"] for r in newer]}

    def record_failures(self, failures: Iterable[Failure], flow_run_id: str | None = None) -> int:
        """Insert failures; one item that failed more than once keeps every record (``#2``, ``#3``).

        The key is (stage, item, artifact), and inserts skip existing keys so a resumed run adds no
        duplicates; two different failures of one item in one artifact must therefore not share a
        key, or the second would vanish.
        """
        seen: dict[tuple[str, str, str], int] = {}
        rows = []
        for f in failures:
            key = (f.stage, f.item_id, f.artifact_id or "")
            seen[key] = seen.get(key, 0) + 1
            item_id = f.item_id if seen[key] == 1 else f"{f.item_id}#{seen[key]}"
            rows.append(
                {
                    **f.model_dump(),
                    "item_id": item_id,
                    "artifact_id": f.artifact_id or "",
                    "flow_run_id": flow_run_id,
                    "created_at": datetime.now(UTC).replace(tzinfo=None),
                }
            )
        if not rows:
            return 0
        table = pa.Table.from_pylist(rows)
        with self.connect() as con:
            con.register("new_failures", table)
            con.execute(
                "INSERT INTO failures SELECT stage, item_id, artifact_id, error_class, message, raw_output, "
                "attempts, flow_run_id, created_at FROM new_failures ON CONFLICT DO NOTHING"
            )
        return len(rows)

    def replace_failures(
        self, artifact_id: str, failures: list[Failure], flow_run_id: str | None = None
    ) -> None:
        """An artifact (re)built: its old failures go, its new ones (if any) take their place."""
        with self.connect() as con:
            con.execute("DELETE FROM failures WHERE artifact_id = ?", [artifact_id])
        self.record_failures(failures, flow_run_id)

    def update_payload(self, ref: ArtifactRef, nbytes: int) -> None:
        """Rows and size of an artifact rebuilt under its id (same ingredients, new content)."""
        with self.connect() as con:
            con.execute("UPDATE artifacts SET rows = ?, bytes = ? WHERE id = ?", [ref.rows, nbytes, ref.id])

    def record_run(self, flow_run_id: str, flow_name: str, parameters: Any, state: str) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.connect() as con:
            con.execute(
                """INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL)
                   ON CONFLICT (flow_run_id) DO UPDATE SET state = excluded.state,
                   ended_at = CASE WHEN excluded.state IN ('Completed', 'Failed', 'Crashed', 'Cancelled')
                                   THEN ? ELSE NULL END""",
                [flow_run_id, flow_name, json.dumps(parameters, default=str), state, now, now],
            )

    # --- reads -----------------------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with self.connect() as con:
            cursor = con.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def artifacts(self, kind: str | None = None, stage: str | None = None) -> list[dict]:
        clauses, params = [], []
        if kind:
            clauses.append("kind = ?")
            params.append(kind)
        if stage:
            clauses.append("stage = ?")
            params.append(stage)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self.query(
            f"SELECT id, kind, stage, rows, created_at, uri FROM artifacts {where} ORDER BY created_at",
            params,
        )

    def ancestors(self, artifact_id: str, max_depth: int = 1000) -> list[dict]:
        """Every artifact this one was derived from, with its shortest distance and the edge role."""
        return self._walk(artifact_id, "parent", "child", max_depth)

    def descendants(self, artifact_id: str, max_depth: int = 1000) -> list[dict]:
        """Every artifact derived from this one: what a change to it would invalidate."""
        return self._walk(artifact_id, "child", "parent", max_depth)

    def _walk(self, artifact_id: str, towards: str, away: str, max_depth: int) -> list[dict]:
        # The recursion is the hot loop, so it joins on integer keys only; the few nodes it finds are
        # resolved to ids, edge roles and kinds afterwards with two filtered scans.
        walk_sql = f"""
            WITH RECURSIVE walk(key, depth) AS (
                SELECT {towards}_key, 1 FROM edges WHERE {away}_key = $start
                UNION
                SELECT e.{towards}_key, w.depth + 1 FROM walk w JOIN edges e ON e.{away}_key = w.key
                WHERE w.depth < $max_depth
            )
            SELECT key, min(depth) FROM walk GROUP BY key
        """
        with self.connect() as con:
            con.execute("SET threads = 1")  # each level is a tiny join; scheduling would dominate
            try:
                start_key = id_key(artifact_id)
                depth_of = dict(
                    con.execute(walk_sql, {"start": start_key, "max_depth": max_depth}).fetchall()
                )
                if not depth_of:
                    return []
                depth_of_near = {**depth_of, start_key: 0}
                hops = con.execute(
                    f"""SELECT {towards}, {towards}_key, {away}, {away}_key, role FROM edges
                        WHERE {towards}_key IN (SELECT unnest($found)) AND {away}_key IN (SELECT unnest($near))""",
                    {"found": list(depth_of), "near": list(depth_of_near)},
                ).fetchall()
                found: dict[str, dict] = {}
                for node, node_key, via, via_key, role in sorted(hops, key=lambda h: (h[2], h[4])):
                    depth = depth_of[node_key]
                    if node not in found and depth_of_near[via_key] == depth - 1:
                        found[node] = {"id": node, "depth": depth, "via": via, "role": role}
                kinds = dict(
                    (row[0], row[1:])
                    for row in con.execute(
                        "SELECT id, kind, stage FROM artifacts WHERE id IN (SELECT unnest(?))", [list(found)]
                    ).fetchall()
                )
            finally:
                con.execute("RESET threads")
        for row in found.values():
            row["kind"], row["stage"] = kinds.get(row["id"], (None, None))
        return sorted(found.values(), key=lambda r: (r["depth"], r["id"]))

    def edges_of(self, artifact_id: str) -> list[dict]:
        return self.query(
            "SELECT parent, child, role FROM edges WHERE parent = ? OR child = ? ORDER BY role",
            [artifact_id] * 2,
        )

    def counts(self) -> dict[str, int]:
        with self.connect() as con:
            return {
                table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("artifacts", "edges", "runs", "failures")
            }


def _rekey_edges(con: duckdb.DuckDBPyConnection) -> None:
    """Give every edge keys of the current scheme (a catalog written by an older Trailforge)."""
    found = con.execute("SELECT value FROM settings WHERE key = 'edge_keys'").fetchone()
    if found and found[0] == EDGE_KEY_SCHEME:
        return
    edges = con.sql("SELECT parent, child, role FROM edges").to_arrow_table()
    con.execute("BEGIN")
    if edges.num_rows:
        con.register("rekeyed", keyed_edges(edges))
        con.execute("DELETE FROM edges")
        con.execute("INSERT INTO edges SELECT * FROM rekeyed")
    con.execute(
        "INSERT INTO settings VALUES ('edge_keys', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [EDGE_KEY_SCHEME],
    )
    con.execute("COMMIT")
