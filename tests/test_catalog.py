import multiprocessing

import pyarrow as pa

from storage import ArtifactRef, Catalog
from storage.catalog import ARTIFACT_SCHEMA, EDGE_SCHEMA


def ref(i: str, kind="tasks") -> ArtifactRef:
    return ArtifactRef(id=i, kind=kind, stage="s", uri=f"/x/{i}", rows=1)


def diamond(catalog: Catalog) -> None:
    # world -> index, tasks ; (index, tasks) -> shard -> merged -> checkpoint
    catalog.record(ref("world"))
    catalog.record(ref("index"), {"corpus": ref("world")})
    catalog.record(ref("tasks"), {"world": ref("world")})
    catalog.record(ref("shard"), {"index": ref("index"), "tasks": ref("tasks")})
    catalog.record(ref("merged"), {"shards": [ref("shard")]})
    catalog.record(ref("ckpt"), {"selection": ref("merged")})


def test_ancestors_and_descendants(tmp_path):
    catalog = Catalog(tmp_path / "l.duckdb")
    diamond(catalog)
    ancestors = {r["id"]: r["depth"] for r in catalog.ancestors("ckpt")}
    assert ancestors == {"merged": 1, "shard": 2, "index": 3, "tasks": 3, "world": 4}
    descendants = {r["id"]: r["depth"] for r in catalog.descendants("world")}
    assert descendants == {"index": 1, "tasks": 1, "shard": 2, "merged": 3, "ckpt": 4}
    assert catalog.ancestors("world") == []
    roles = {r["id"]: r["role"] for r in catalog.ancestors("shard")}
    assert roles["index"] == "index" and roles["tasks"] == "tasks"
    assert roles["world"] in {"corpus", "world"}  # reached through either parent at the same depth


def test_recording_twice_adds_nothing(tmp_path):
    catalog = Catalog(tmp_path / "l.duckdb")
    diamond(catalog)
    first = catalog.counts()
    diamond(catalog)
    assert catalog.counts() == first == {"artifacts": 6, "edges": 6, "runs": 0, "failures": 0}


def _writer(path: str, worker: int, n: int) -> None:
    catalog = Catalog(path)
    for i in range(n):
        parent = ArtifactRef(id=f"w{worker}-{i - 1}", kind="tasks", stage="s", uri="u") if i else None
        catalog.record(
            ArtifactRef(id=f"w{worker}-{i}", kind="tasks", stage="s", uri="u"),
            {"prev": parent} if parent else {},
        )


def test_four_processes_record_into_one_catalog(tmp_path):
    path = str(tmp_path / "l.duckdb")
    n = 60
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, n)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    counts = Catalog(path).counts()
    assert counts["artifacts"] == 4 * n
    assert counts["edges"] == 4 * (n - 1)
    assert len(Catalog(path).ancestors(f"w3-{n - 1}")) == n - 1


def test_bulk_insert_through_arrow(tmp_path):
    catalog = Catalog(tmp_path / "l.duckdb")
    n = 5000
    artifacts = pa.table(
        {
            "id": [f"a{i}" for i in range(n)],
            "kind": ["tasks"] * n,
            "uri": ["u"] * n,
            "stage": ["s"] * n,
            "config_json": ["{}"] * n,
            "code_version": ["0"] * n,
            "rows": [1] * n,
            "bytes": [1] * n,
            "created_at": pa.array([None] * n, pa.timestamp("us")),
            "flow_run_id": [None] * n,
            "task_run_id": [None] * n,
            "environment_json": ["{}"] * n,
        },
        schema=ARTIFACT_SCHEMA,
    )
    edges = pa.table(
        {
            "parent": [f"a{i}" for i in range(n - 1)],
            "child": [f"a{i + 1}" for i in range(n - 1)],
            "role": ["input"] * (n - 1),
        },
        schema=EDGE_SCHEMA,
    )
    catalog.record_artifacts(artifacts, edges)
    catalog.record_artifacts(artifacts, edges)
    assert catalog.counts()["artifacts"] == n
    assert max(r["depth"] for r in catalog.ancestors(f"a{n - 1}", max_depth=50)) == 50


def _first_writer(path: str, worker: int, barrier) -> None:
    catalog = Catalog(path)
    barrier.wait()  # every process opens the not-yet-existing file at once
    catalog.record(ArtifactRef(id=f"first-{worker}", kind="tasks", stage="s", uri="u"))


def test_processes_creating_the_catalog_together_lose_nothing(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(25):
        path = str(tmp_path / f"new-{trial}.duckdb")
        barrier = context.Barrier(4)
        workers = [context.Process(target=_first_writer, args=(path, w, barrier)) for w in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
            assert w.exitcode == 0
        assert Catalog(path).counts()["artifacts"] == 4, f"trial {trial}"
