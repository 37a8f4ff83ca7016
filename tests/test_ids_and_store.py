import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from storage import ArtifactStore, Catalog, artifact_id, canonical_json
from storage.store import read_table, write_table
from tasks.corpus.world import WorldConfig
from tasks.stage import execute_stage, get_stage, stage_artifact_id


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": {"y": 2, "x": 1}}) == canonical_json({"a": {"x": 1, "y": 2}, "b": 1})


def test_artifact_id_changes_with_each_ingredient():
    base = artifact_id("train", {"lr": 1e-4}, {"model": "m1"}, code_version="1")
    assert base == artifact_id("train", {"lr": 1e-4}, {"model": "m1"}, code_version="1")
    assert base != artifact_id("train", {"lr": 2e-4}, {"model": "m1"}, code_version="1")
    assert base != artifact_id("train", {"lr": 1e-4}, {"model": "m2"}, code_version="1")
    assert base != artifact_id("train", {"lr": 1e-4}, {"model": "m1"}, code_version="2")
    assert base != artifact_id("eval", {"lr": 1e-4}, {"model": "m1"}, code_version="1")


def test_failed_write_publishes_nothing(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writing("world", "abc", "world", "{}") as work:
            write_table(work, pa.table({"x": [1, 2]}))
            raise RuntimeError("stage crashed")
    assert not store.exists("world", "abc")
    assert not store.path("world", "abc").exists()
    assert list(store.tmp.iterdir()) == []


def test_second_writer_of_same_id_keeps_first(tmp_path):
    store = ArtifactStore(tmp_path)
    for value in (1, 2):
        with store.writing("world", "abc", "world", "{}") as work:
            write_table(work, pa.table({"x": [value]}))
    assert read_table(store.ref("world", "abc")).column("x").to_pylist() == [1]


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    from storage import ArtifactStore
    from storage.store import write_table
    store = ArtifactStore(sys.argv[1])
    with store.writing("world", sys.argv[2], "world", "{}") as work:
        write_table(work, pa.table({"x": list(range(1000))}), name="part-0")
        (store.root / "started").write_text("1")
        time.sleep(600)
    """
)


def test_killed_writer_leaves_no_artifact_and_rerun_has_no_duplicates(tmp_path):
    store = ArtifactStore(tmp_path)
    world = WorldConfig(people=20, organisations=6, works=4, events=2, cities=6, countries=2)
    aid = stage_artifact_id(get_stage("world"), world, {})
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), aid])
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert proc.poll() is None, "writer exited early"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert not store.exists("world", aid)
    assert not store.path("world", aid).exists()
    catalog = Catalog(store.catalog_path)
    for _ in range(2):  # the resumed run, then a rerun of it
        ref = execute_stage("world", store, world, {})
        catalog.record(ref, {})
    assert ref.id == aid and store.exists("world", aid)
    assert catalog.counts()["artifacts"] == 1
    assert [p.name for p in store.path("world", aid).iterdir() if p.name.startswith("part")] == []
    assert store.sweep_tmp() == 1  # the killed writer's private directory, never visible
