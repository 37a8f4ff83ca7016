"""A collection killed halfway (SIGKILL of the whole CLI process) resumes with only unfinished shards."""

import os
import signal
import subprocess
import sys
import time

import pytest

from storage import ArtifactStore, Catalog

SHARDS = 8
FLAGS = [
    "--policy.spec", "hf:tiny",
    "--synthesis.train-tasks", str(SHARDS),
    "--synthesis.eval-tasks", "2",
    "--collect.shard-size", "1",
    "--collect.samples-per-task", "2",
    "--collect.agent.max-turns", "4",
    "--collect.agent.max-new-tokens", "64",
    "--evaluate.agent.max-turns", "1",
    "--evaluate.agent.max-new-tokens", "8",
    "--train.max-steps", "1",
]  # fmt: skip


def shard_dirs(store: ArtifactStore) -> dict[str, float]:
    root = store.artifacts / "trajectory-shard"
    if not root.exists():
        return {}
    return {p.name: (p / "_meta.json").stat().st_mtime for p in root.iterdir() if (p / "_meta.json").exists()}


def trailforge(home, *args) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args, "--home", str(home)]


@pytest.mark.slow
def test_killed_collection_reruns_only_unfinished_shards(tmp_path):
    store = ArtifactStore(tmp_path)
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            trailforge(tmp_path, "run", *FLAGS), env=env, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(shard_dirs(store)) < 2:
        assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = shard_dirs(store)
    assert 2 <= len(finished_before) < SHARDS

    rerun = subprocess.run(trailforge(tmp_path, "run", *FLAGS), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = shard_dirs(store)
    assert len(after) == SHARDS
    # Finished shards were reused as they were; only the rest were generated.
    assert {k: after[k] for k in finished_before} == finished_before
    # (a shard may have been published between the snapshot and the kill: it counts as cached too)
    lines = [line.strip() for line in rerun.stdout.splitlines() if " collect r1 shard " in line]
    cached = sum(line.startswith("cached") for line in lines)
    assert len(lines) == SHARDS and cached >= len(finished_before)
    assert sum(line.startswith("ran") for line in lines) == SHARDS - cached

    catalog = Catalog(store.catalog_path)
    ids = [row["id"] for row in catalog.artifacts(kind="trajectory-shard")]
    assert len(ids) == len(set(ids)) == SHARDS
    merged = catalog.artifacts(stage="merge-trajectories")
    assert len(merged) == 1 and merged[0]["rows"] == SHARDS * 2
