"""Rejection-sampling rounds benchmark: do rounds add beyond training longer?

The embedded default (SmolLM2-135M on this machine's CPU, bm25s, the reference judge) through

1. **base**: the untrained policy on the held-out tasks;
2. **cold start**: SFT on the oracle's gold-path demonstrations of ``--cold-start-tasks`` training
   tasks (spread over buckets), trained until more passes over them stop paying (``--cold-start-steps``),
   so that what the rounds add is not the cold start's unfinished training;
3. **round 1, round 2**: the policy samples ``--samples`` rollouts on every task of the training
   pool that has no demonstration (``--all-tasks``: on every one; the pool grown by ``--extra-pool``
   tasks synthesised after the held-out split is fixed), and ``--resample`` more on each task they
   answered right fewer than ``--resample-below`` times; the reference judge rates every
   step, selection keeps correct well-rated trajectories (hard tasks oversampled, each bucket
   weighted as in the pool), and the policy trains on
   everything kept so far plus the cold-start demonstrations, at the rounds' low flat learning rate
   (``--train-from start``: the cold start trains on it afresh, for every round's steps so far);
4. **control**: the cold-start policy trained for the same runs and steps on the cold-start
   demonstrations only — what the rounds add beyond training longer (``--control-seeds``: again
   with other training seeds, to see how far training noise alone moves a score; ``--round-seeds``:
   the rounds' training again with other seeds on the same kept trajectories, so that both sides of
   the comparison are a mean over seeds; ``--rollout-seeds``: round 2 drawn again, new rollouts from
   the same round-1 policy, for the rounds' rollout noise).

Every policy is scored on ``--eval-tasks`` held-out tasks (no fact, root, answer or named entity
shared with training; at least half hard) greedily, with a 95% bootstrap interval and per bucket.
The last line is JSON; with ``--out`` (default ``benchmarks/results/rft_bench.json``) the same JSON
is written there. Everything is cached under ``--home``: a rerun recomputes nothing, and its
``minutes`` then time the cache (``stages_reused`` says how many stages were, and the time target
is not judged).

    .venv/bin/python benchmarks/rft_bench.py [--home .trailforge-rft] [--eval-tasks 200]
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

# At least half hard by REDSearcher's measure (k >= 2, MSD >= 3 or 4+ hops: 45%) and 70% by the
# broader one (3+ hops, k >= 2 or MSD >= 3), with a tool bucket; two-hop chains keep an easy floor.
BENCH_MIX = {
    "h2-k1-m2": 0.25,
    "h2-k1-m1": 0.05,
    "h3-k1-m2": 0.15,
    "h3-k1-m3": 0.20,
    "h3-k2-m2": 0.15,
    "h4-k1-m2": 0.20,
}


def broadly_hard(bucket: str) -> bool:
    from tasks.synthesis.difficulty import Bucket

    b = Bucket.parse(bucket)
    return b.hops >= 3 or b.k >= 2 or b.msd >= 3


def bench_config(args):
    from flows.config import PipelineConfig
    from tasks.corpus.world import WorldConfig

    tasks = args.train_tasks + args.eval_tasks
    agent = {"max_new_tokens": args.max_new_tokens}
    world = WorldConfig.for_documents(int(tasks * args.docs_per_task), seed=args.seed).model_copy(
        update={"distractors": args.distractors}
    )
    return PipelineConfig.model_validate(
        {
            "home": args.home,
            "rounds": 2,
            "world": world.model_dump(),
            "synthesis": {
                "train_tasks": args.train_tasks,
                "eval_tasks": args.eval_tasks,
                "mix": BENCH_MIX,
                "seed": args.seed,
            },
            "pool": {"extra_tasks": args.extra_pool},
            "cold_start": {
                "tasks": args.cold_start_tasks,
                "train": {"max_steps": args.cold_start_steps, "batch_size": 2, "learning_rate": 2e-4},
            },
            "collect": {
                "samples_per_task": args.samples,
                "temperature": args.temperature,
                "shard_size": 64,
                "skip_demonstrated": not args.all_tasks,
                "resample": args.resample,
                "resample_below": args.resample_below,
                "agent": agent,
            },
            "select": {
                "max_per_task": args.max_per_task,
                "hard_task_copies": args.hard_copies,
                "balance_buckets": not args.no_balance,
                "refined_targets": args.refined_targets,
                "balance_training": args.balance_training,
                "max_bucket_copies": args.max_copies,
            },
            "evaluate": {"agent": agent},
            "train_from": args.train_from,
            "train": {
                "max_steps": args.round_steps[0],
                "batch_size": 2,
                "learning_rate": args.round_lr,
                "warmup_ratio": 0.0,
                "lr_scheduler": "constant",
            },
        }
    )


def int_list(text: str) -> list[int]:
    """A comma-separated list of integers, as the per-round and per-seed flags take them."""
    return [int(n) for n in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=".trailforge-rft")
    parser.add_argument("--out", default="benchmarks/results/rft_bench.json", help="'' to skip writing")
    parser.add_argument("--eval-tasks", type=int, default=200)
    parser.add_argument(
        "--train-tasks",
        type=int,
        default=192,
        help="the training pool: the cold start's demonstrated tasks and the ones rounds sample",
    )
    parser.add_argument("--cold-start-tasks", type=int, default=64, help="pool tasks with a demonstration")
    parser.add_argument(
        "--extra-pool",
        type=int,
        default=128,
        help="training tasks added for the rounds after the held-out split is fixed (--pool.extra-tasks): "
        "the same world, held-out tasks, cold start and control; only the rounds change (0: the rounds "
        "sample the 128 undemonstrated tasks of --train-tasks alone)",
    )
    parser.add_argument(
        "--cold-start-steps",
        type=int,
        default=192,
        help="cold-start SFT steps at batch 2 (192: six passes over 64 demonstrations; 64, two passes, "
        "left the cold start 26 points short of where more training on its demonstrations took it)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=2,
        help="rollouts per sampled pool task and round (2 on 128 tasks kept 111 trajectories of 72 tasks "
        "where 4 on 64 kept 60 of 35: more tasks, same cost)",
    )
    parser.add_argument(
        "--all-tasks",
        action="store_true",
        help="rounds sample every pool task, demonstrated or not (default: only the undemonstrated ones)",
    )
    parser.add_argument(
        "--resample",
        type=int,
        default=6,
        help="difficulty-aware resampling: this many more rollouts on each task the first --samples "
        "answered right fewer than --resample-below times (0: none)",
    )
    parser.add_argument("--resample-below", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--hard-copies", type=int, default=2)
    parser.add_argument(
        "--max-per-task",
        type=int,
        default=2,
        help="right trajectories kept per task at most; with --resample, a higher cap keeps more of what "
        "the resampled (hard) tasks yielded",
    )
    parser.add_argument(
        "--no-balance", action="store_true", help="keep the kept data's bucket mix as the policy solved it"
    )
    parser.add_argument(
        "--balance-training",
        action="store_true",
        help="weigh each round's whole training set (demonstrations and everything kept) by kind of question "
        "against the pool",
    )
    parser.add_argument(
        "--max-copies", type=int, default=4, help="copies of one trajectory at most (balancing)"
    )
    parser.add_argument(
        "--refined-targets",
        action="store_true",
        help="rounds also train on failed trajectories cut at their first flawed step, the judge's "
        "refined step as the target (SRR-Judge)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=128,
        help="tokens the policy may write per turn, in collection and evaluation",
    )
    parser.add_argument(
        "--round-steps",
        type=int_list,
        default=[64],
        help="steps per round and per control run (64 at batch 2: most of round 1's training set once); "
        "one count per round, comma-separated (64,140), gives a later round, which trains on more, more",
    )
    parser.add_argument("--round-lr", type=float, default=2e-5)
    parser.add_argument(
        "--train-from",
        choices=("previous", "start"),
        default="previous",
        help="previous: each round continues the previous round's policy; start: each round trains the "
        "cold start afresh on everything kept so far, for every round's steps so far (the control's count)",
    )
    parser.add_argument("--docs-per-task", type=float, default=6.0)
    parser.add_argument("--distractors", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--control-seeds",
        type=int_list,
        default=[],
        help="after the timed run, also train the control arm with these training seeds (comma-separated; "
        "the data order changes, nothing else) and score each: how far training noise alone moves a score",
    )
    parser.add_argument(
        "--round-seeds",
        type=int_list,
        default=[],
        help="after the timed run, also train the rounds again with these training seeds on the same kept "
        "trajectories (comma-separated) and score round 1 and round 2 of each: the rounds' training noise",
    )
    parser.add_argument(
        "--rollout-seeds",
        type=int_list,
        default=[],
        help="after the timed run, also draw round 2 again with these collection seeds (comma-separated): "
        "new rollouts from the same round-1 policy, selected, trained and scored as round 2 was: the "
        "noise of the rounds' rollouts, which --round-seeds holds fixed",
    )
    parser.add_argument(
        "--old-recipe-arm",
        action="store_true",
        help="after the timed run, also train round 1 the way rounds used to be trained (warm-up and cosine "
        "at 2e-4 on this round's selection alone, steps rated 2 kept, oracle fallback) and score it",
    )
    args = parser.parse_args()
    seed_flags = (
        ("--control-seeds", args.control_seeds),
        ("--round-seeds", args.round_seeds),
        ("--rollout-seeds", args.rollout_seeds),
    )
    for flag, seeds in seed_flags:
        if 0 in seeds or len(set(seeds)) < len(seeds):
            parser.error(f"{flag}: seeds other than the timed run's 0, each once, not {seeds}")
    if len(args.round_steps) not in (1, 2):
        parser.error(f"--round-steps: one count, or one for each of the 2 rounds, not {args.round_steps}")

    from flows.recipe import (
        build_task_set,
        control_arm,
        evaluate,
        recollected_round,
        retrained_rounds,
        round_one_policy,
        run_rounds,
    )
    from flows.report import round_entry
    from flows.stages import local_stage_runner
    from storage.schemas import EvalRow
    from storage.store import read_rows
    from tasks.evaluate.significance import paired_evaluations
    from tasks.synthesis.evidence import load_tasks

    started = time.perf_counter()
    config = bench_config(args)
    with local_stage_runner("rft-bench", config, args.home) as run:
        task_set = build_task_set(run, config)
        base, policy, start = round_one_policy(run, config, None, task_set)
        held_out_ref = task_set.tasks
        base_eval = evaluate(run, config, base, task_set, "evaluate base")
        entries = {"base": round_entry("base", base_eval, tasks=held_out_ref)}
        entries["cold_start"] = round_entry(
            "cold start", start.evaluation, start.demonstrations, start.checkpoint, held_out_ref
        )
        steps = args.round_steps if len(args.round_steps) > 1 else None
        rounds = run_rounds(run, config, policy, task_set, [start.demonstrations], steps)
        for i, result in enumerate(rounds, 1):
            entries[f"round_{i}"] = round_entry(
                f"round {i}", result.evaluation, result.selection, result.checkpoint, held_out_ref
            )
        control_policy, control_eval = control_arm(run, config, start, task_set, steps)
        entries["control"] = round_entry("control", control_eval, None, control_policy, held_out_ref)
        minutes = (time.perf_counter() - started) / 60
        # a rerun on a store that already holds stages times the cache, not the recipe
        reused = sum(event.reused for event in run.events)
        if args.old_recipe_arm:
            entries["old_recipe_round_1"] = old_recipe_round(run, config, start, task_set)
        for seed in args.control_seeds:
            seeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})
            seeded_policy, seeded_eval = control_arm(run, seeded, start, task_set, steps, f"seed {seed}")
            entries[f"control_seed_{seed}"] = round_entry(
                f"control seed {seed}", seeded_eval, None, seeded_policy, held_out_ref
            )
        for seed in args.round_seeds:
            seeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})
            # round 1 of the seed scored too: a round's own spread, which round 2 of one seed hides
            first_policy, first_eval = retrained_rounds(
                run, seeded, start, task_set, rounds[:1], steps, f"seed {seed}"
            )
            entries[f"round_1_seed_{seed}"] = round_entry(
                f"round 1 seed {seed}", first_eval, None, first_policy, held_out_ref
            )
            seeded_policy, seeded_eval = retrained_rounds(
                run, seeded, start, task_set, rounds, steps, f"seed {seed}"
            )
            entries[f"round_2_seed_{seed}"] = round_entry(
                f"round 2 seed {seed}", seeded_eval, None, seeded_policy, held_out_ref
            )
        drawn = {}
        for seed in args.rollout_seeds:
            reseeded = config.model_copy(update={"collect": config.collect.model_copy(update={"seed": seed})})
            drawn[seed] = recollected_round(
                run, reseeded, start, task_set, rounds, steps, f"rollout seed {seed}"
            )
            entries[f"round_2_rollout_seed_{seed}"] = round_entry(
                f"round 2 rollout seed {seed}",
                drawn[seed].evaluation,
                drawn[seed].selection,
                drawn[seed].checkpoint,
                held_out_ref,
            )

    held_out = load_tasks(task_set.tasks, "eval")
    store = run.store
    rows = {k: read_rows(store.ref("evaluation", e.evaluation_id), EvalRow) for k, e in entries.items()}

    def paired(a: str, b: str) -> dict:
        p = paired_evaluations(rows[a], rows[b])
        return {
            "points": round(100 * p.difference, 1),
            "ci95": [round(100 * p.ci_low, 1), round(100 * p.ci_high, 1)],
            "wrong_to_right": p.wrong_to_right,
            "right_to_wrong": p.right_to_wrong,
            "mcnemar_p": float(f"{p.mcnemar_p:.3g}"),
        }

    by_round = {k: entries[k] for k in ("base", "cold_start", "round_1", "round_2")}

    def buckets(entry) -> dict:
        return {
            f"{b.dimension}={b.value}": round(b.pass_at_1, 4)
            for b in entry.buckets
            if b.dimension in ("bucket", "difficulty")
        }

    cold = entries["cold_start"]
    controls = ["control", *(f"control_seed_{seed}" for seed in args.control_seeds)]
    round_2s = ["round_2", *(f"round_2_seed_{seed}" for seed in args.round_seeds)]

    def mean_pass(keys: list[str]) -> float:
        return round(sum(entries[k].summary.pass_at_1 for k in keys) / len(keys), 4)

    result = {
        "pass1_by_round": {k: round(e.summary.pass_at_1, 4) for k, e in by_round.items()},
        "pass1_control": round(entries["control"].summary.pass_at_1, 4),
        # the control trained again with other seeds: the spread training noise alone gives
        "pass1_control_by_seed": {
            str(seed): round(entries[f"control_seed_{seed}"].summary.pass_at_1, 4)
            for seed in args.control_seeds
        },
        # the control over every seed trained (seed 0 is the control arm above)
        "pass1_control_mean": mean_pass(controls),
        # the rounds trained again with other seeds on the same kept trajectories
        "pass1_round_2_by_seed": {
            str(seed): round(entries[f"round_2_seed_{seed}"].summary.pass_at_1, 4)
            for seed in args.round_seeds
        },
        # round 2 over every seed trained (seed 0 is round 2 above)
        "pass1_round_2_mean": mean_pass(round_2s),
        # round 1 of the same retrained seeds, and over every seed (seed 0 is round 1 above)
        "pass1_round_1_by_seed": {
            str(seed): round(entries[f"round_1_seed_{seed}"].summary.pass_at_1, 4)
            for seed in args.round_seeds
        },
        "pass1_round_1_mean": mean_pass(["round_1", *(f"round_1_seed_{seed}" for seed in args.round_seeds)]),
        # round 2 drawn again: new rollouts (collection seed N) from the same round-1 policy
        "pass1_round_2_by_rollout_seed": {
            str(seed): round(entries[f"round_2_rollout_seed_{seed}"].summary.pass_at_1, 4)
            for seed in args.rollout_seeds
        },
        "pass1_old_recipe_round_1": (
            round(entries["old_recipe_round_1"].summary.pass_at_1, 4)
            if "old_recipe_round_1" in entries
            else None
        ),
        "ci95_by_round": {
            k: [round(e.summary.ci_low, 4), round(e.summary.ci_high, 4)] for k, e in entries.items()
        },
        "pass1_by_bucket_by_round": {k: buckets(e) for k, e in entries.items()},
        "kept_by_round": {
            k: {"kept": e.kept, "removed": {f.filter: f.removed for f in e.filters if f.removed}}
            for k, e in entries.items()
            if e.filters
        },
        "resampled_by_round": {
            **{f"round_{i}": resampled(result, args.samples) for i, result in enumerate(rounds, 1)},
            **{f"round_2_rollout_seed_{seed}": resampled(d, args.samples) for seed, d in drawn.items()},
        },
        "training_loss_by_round": {
            k: [round(e.training["first_loss"], 4), round(e.training["last_loss"], 4)]
            for k, e in entries.items()
            if e.training and e.training.get("first_loss") is not None
        },
        "cold_start": {
            "demonstrations": cold.kept,
            "steps": cold.training["steps"],
            "final_loss": round(cold.training["last_loss"], 4),
        },
        "f1_by_round": {k: round(e.summary.f1, 4) for k, e in entries.items()},
        # how the greedy answers went: right, or which way wrong (tasks.evaluate.failures)
        "failures_by_round": {k: e.failures for k, e in entries.items()},
        "format_valid_by_round": {k: round(e.summary.format_valid, 4) for k, e in entries.items()},
        # task by task on the same held-out tasks: the difference, its paired 95% interval, McNemar's p
        "paired": {
            "round_1_vs_cold_start": paired("cold_start", "round_1"),
            "round_2_vs_cold_start": paired("cold_start", "round_2"),
            "round_2_vs_control": paired("control", "round_2"),
            **{
                f"round_2_vs_control_seed_{seed}": paired(f"control_seed_{seed}", "round_2")
                for seed in args.control_seeds
            },
            # each retrained round 2 against the control trained with the same seed, where there is one
            **{
                f"round_2_seed_{seed}_vs_control_seed_{seed}": paired(
                    f"control_seed_{seed}", f"round_2_seed_{seed}"
                )
                for seed in args.round_seeds
                if seed in args.control_seeds
            },
            **{
                f"round_1_seed_{seed}_vs_cold_start": paired("cold_start", f"round_1_seed_{seed}")
                for seed in args.round_seeds
            },
            # round 2 drawn again against the control arm, and against the first draw
            **{
                f"round_2_rollout_seed_{seed}_vs_{other}": paired(other, f"round_2_rollout_seed_{seed}")
                for seed in args.rollout_seeds
                for other in ("control", "round_2")
            },
        },
        "eval_tasks": len(held_out),
        "hard_share": round(sum(b.hard for b in map(_bucket, held_out)) / len(held_out), 4),
        "broadly_hard_share": round(sum(broadly_hard(t.bucket) for t in held_out) / len(held_out), 4),
        "train_pool": args.train_tasks + args.extra_pool,
        "extra_pool": args.extra_pool,
        "samples_per_task": args.samples,
        "skip_demonstrated": not args.all_tasks,
        "resample": args.resample,
        "resample_below": args.resample_below,
        "max_per_task": args.max_per_task,
        "round_steps": args.round_steps if len(args.round_steps) > 1 else args.round_steps[0],
        "round_lr": args.round_lr,
        "train_from": args.train_from,
        "round_seeds": [0, *args.round_seeds],
        "control_seeds": [0, *args.control_seeds],
        "rollout_seeds": [0, *args.rollout_seeds],
        "balance_buckets": not args.no_balance,
        "refined_targets": args.refined_targets,
        "balance_training": args.balance_training,
        "max_copies": args.max_copies,
        "max_turns": config.evaluate.agent.max_turns,
        "max_new_tokens": config.evaluate.agent.max_new_tokens,
        "out_of_reach": entries["cold_start"].summary.out_of_reach,
        "minutes": round(minutes, 1),
        "stages_reused": reused,
    }
    passes = result["pass1_by_round"]
    result["targets"] = {
        "cold_start_ge_base_plus_20": passes["cold_start"] >= passes["base"] + 0.20,
        "round_2_ge_cold_start_plus_5": passes["round_2"] >= passes["cold_start"] + 0.05,
        "round_2_ge_control_plus_3": passes["round_2"] >= result["pass1_control"] + 0.03,
        # judged only when the control was trained with more than one seed
        "round_2_ge_control_mean_plus_3": (
            passes["round_2"] >= result["pass1_control_mean"] + 0.03 if args.control_seeds else None
        ),
        # judged only when both sides were trained with more than one seed
        "round_2_mean_ge_control_mean_plus_3": (
            result["pass1_round_2_mean"] >= result["pass1_control_mean"] + 0.03
            if args.control_seeds and args.round_seeds
            else None
        ),
        "within_40_minutes": minutes <= 40 if not reused else None,
    }
    line = json.dumps(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    print(line)


def resampled(result, samples: int) -> dict:
    """What the resampling pass drew: tasks, rollouts, right answers, and tasks it found an answer for."""
    from storage.schemas import Annotation, Trajectory
    from storage.store import read_rows

    extra = [t for t in read_rows(result.trajectories, Trajectory) if t.sample_index >= samples]
    right = {a.trajectory_id for a in read_rows(result.annotations, Annotation) if a.exact_match >= 1}
    return {
        "tasks": len({t.task_id for t in extra}),
        "rollouts": len(extra),
        "right": sum(t.id in right for t in extra),
        "tasks_solved": len({t.task_id for t in extra if t.id in right}),
    }


def old_recipe_round(run, config, start, task_set):
    """Round 1 as rounds were trained before: what the new recipe is measured against."""
    from flows.recipe import annotate_and_select, collect, evaluate, oracle_demonstrations
    from flows.report import round_entry
    from tasks.train.sft import TrainConfig

    pool = task_set.for_rounds()
    trajectories = collect(run, config, start.checkpoint, pool, 1, [start.demonstrations])  # round 1's
    old_select = config.select.model_copy(
        update={
            "min_step_rating": 2,
            "oracle_fallback": True,
            "hard_task_copies": 1,
            "balance_buckets": False,
            "balance_training": False,
        }
    )
    oracle = oracle_demonstrations(run, config, pool)
    _, selection = annotate_and_select(run, config, pool, trajectories, oracle, "old recipe", old_select)
    old_train = TrainConfig(max_steps=config.train.max_steps, batch_size=config.train.batch_size)
    policy = run(
        "train", old_train, {"model": start.checkpoint, "selection": [selection]}, "train old recipe"
    )
    evaluation = evaluate(run, config, policy, task_set, "evaluate old recipe")
    return round_entry("old recipe r1", evaluation, selection, policy, task_set.tasks)


def _bucket(task):
    from tasks.synthesis.difficulty import Bucket

    return Bucket.parse(task.bucket)


if __name__ == "__main__":
    main()
