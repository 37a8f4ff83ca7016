"""Judge benchmark: how far the judges can be trusted on real SmolLM2 trajectories, and how fast.

1. Cold start: tasks, SmolLM2, the oracle's gold-path demonstrations, a short SFT on them.
2. The SFT'd policy collects trajectories on the training tasks (both right and wrong ones occur).
3. The reference judge annotates them (a cached annotation run): ``auroc_reference`` is the AUROC
   of its process score (which never sees the gold answer) for predicting a correct answer.
4. SmolLM2 itself judges the same trajectories as SRR-Judge step judge and Agent-RRM reward model
   (a second cached annotation run): ``parse_failure_rate`` of its replies (every failure is
   recorded, the stage carries on) and ``kappa_model_vs_reference`` on the step ratings it could
   give.
5. ``trajectories_per_s``: the reference judge's throughput over the collected trajectories.

Everything built is cached under ``--home``; a rerun only re-measures the throughput.

    .venv/bin/python benchmarks/judge_bench.py [--home .trailforge-bench] [--tasks 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=".trailforge-bench")
    parser.add_argument("--tasks", type=int, default=32, help="training tasks (two rollouts each)")
    parser.add_argument("--sft-steps", type=int, default=8)
    parser.add_argument("--judged", type=int, default=24, help="trajectories the SmolLM2 judge sees")
    args = parser.parse_args()

    from flows.config import PipelineConfig
    from flows.recipe import annotate, build_task_set, collect, oracle_demonstrations, starting_policy
    from flows.stages import local_stage_runner
    from storage.schemas import Task, Trajectory
    from storage.store import read_rows
    from tasks.judge.annotate import AnnotateConfig, AnnotateShardConfig, judge_shard, load_reliability
    from tasks.select.rejection import SelectConfig
    from tasks.synthesis.evidence import load_tasks

    started = time.perf_counter()
    config = PipelineConfig.model_validate(
        {
            "home": args.home,
            "synthesis": {"train_tasks": args.tasks, "eval_tasks": 4},
            "collect": {"samples_per_task": 2, "shard_size": 16, "agent": {"max_turns": 4}},
            "train": {"max_steps": args.sft_steps, "batch_size": 2},
        }
    )
    with local_stage_runner("judge-bench", config, args.home) as run:
        task_set = build_task_set(run, config)
        base = starting_policy(run, config, None)
        oracle = oracle_demonstrations(run, config, task_set)
        # cold start: the oracle's demonstrations are the whole selection (the policy has none yet)
        cold = annotate(run, config, task_set, [oracle], "annotate oracle")
        selection = run(
            "select", SelectConfig(max_per_task=1), {"annotations": cold, "trajectories": [oracle]}
        )
        policy = run("train", config.train, {"model": base, "selection": selection}, "train cold start")
        trajectories = collect(run, config, policy, task_set, 1)
        reference = annotate(run, config, task_set, [trajectories], "annotate reference")

        collected = read_rows(trajectories, Trajectory)
        # SmolLM2 as SRR-Judge and Agent-RRM on the first shard of them (one cached shard)
        spec = f"hf:{base.uri}"
        judging = AnnotateShardConfig(
            judge=spec, reward_model=spec, max_new_tokens=160, max_reasks=1, shard_size=args.judged
        )
        shard = run(
            "annotate-shard",
            judging,
            {"tasks": task_set.tasks, "trajectories": [trajectories]},
            "smollm2 judges",
        )
        merged_config = AnnotateConfig(**judging.model_dump(exclude={"shard_index"}))
        judged = run("annotate", merged_config, {"shards": [shard]}, "annotate smollm2")
    build_seconds = time.perf_counter() - started

    judges, _ = load_reliability(reference)
    auroc_reference = next(j.auroc for j in judges if (j.family, j.judge) == ("process", "reference"))
    correct = [j for j in judges if j.judge == "exact-match"][0]
    model_judges, pairs = load_reliability(judged)
    model_rows = [j for j in model_judges if j.judge == spec]
    failed = sum(j.failed for j in model_rows)
    asked = sum(j.failed + j.judged for j in model_rows)
    kappa = next(
        (p.kappa for p in pairs if {p.judge_a, p.judge_b} == {"step:reference", f"step:{spec}"}), None
    )

    tasks: dict[str, Task] = {t.id: t for t in load_tasks(task_set.tasks)}
    items = [(t, tasks[t.task_id]) for t in collected]
    repeats = max(1, 2000 // max(len(items), 1))
    timer = time.perf_counter()
    for _ in range(repeats):
        judge_shard(items, AnnotateConfig(), models={})
    per_s = repeats * len(items) / (time.perf_counter() - timer)

    print(f"trajectories: {len(collected)} ({correct.mean_score:.0%} correct); model-judged: {shard.rows}")
    print(f"built or reused in {build_seconds:.0f}s")
    print(
        json.dumps(
            {
                "auroc_reference": auroc_reference,
                "parse_failure_rate": round(failed / asked, 4) if asked else None,
                "trajectories_per_s": round(per_s, 1),
                "kappa_model_vs_reference": kappa,
                "trajectories": len(collected),
                "correct_share": correct.mean_score,
                "model_judge_replies": asked,
                "model_judge_failures": failed,
            }
        )
    )


if __name__ == "__main__":
    main()
