"""Orchestration benchmark: what resuming a finished pipeline costs, and what one shard costs.

Runs the pipeline on the tiny model with many collection shards (a cold run of a minute or more
on 2 CPU cores), then runs it again with the same parameters: everything is a cache hit.
``resume_overhead_ratio`` is the rerun's time over the cold run's (target <= 0.05);
``per_shard_overhead_ms`` is the mean wall time of a cached shard stage — the Prefect task, the
cache lookup and the lineage record, with no work inside. One Prefect server serves both runs,
so its start-up is in neither. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from flows.config import PipelineConfig  # noqa: E402
from flows.pipeline import pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    agent = {"max_turns": 3, "max_new_tokens": args.max_new_tokens}
    with tempfile.TemporaryDirectory() as home, prefect_test_harness(server_startup_timeout=120):
        config = PipelineConfig.model_validate(
            {
                "home": home,
                "policy": {"spec": "hf:tiny"},
                "synthesis": {"train_tasks": args.shards, "eval_tasks": 6},
                "collect": {"samples_per_task": 2, "shard_size": 1, "agent": agent},
                "evaluate": {"agent": agent},
                "train": {"max_steps": 2, "batch_size": 2},
            }
        )
        started = time.perf_counter()
        cold = pipeline(config)
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        warm = pipeline(config)
        warm_s = time.perf_counter() - started

    shard_seconds = [e["seconds"] for e in warm.stages if " shard " in e["stage"]]
    print(
        json.dumps(
            {
                "shards": len(shard_seconds),
                "stages": len(warm.stages),
                "cold_s": round(cold_s, 1),
                "cached_rerun_s": round(warm_s, 2),
                "cache_hits": warm.cache_hits,
                "resume_overhead_ratio": round(warm_s / cold_s, 4),
                "per_shard_overhead_ms": round(1000 * statistics.mean(shard_seconds), 1),
                "cold_stages_ran": cold.computed,
            }
        )
    )


if __name__ == "__main__":
    main()
