"""The pipeline's steps as functions of a :class:`StageRunner`, shared by every flow.

The whole pipeline and the single-part flows (synthesis, collection, annotation, rounds) call the
same functions with the same parameter model, so a part run on its own builds exactly the artifacts
the pipeline would, and each reuses what the other already built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from flows.config import PipelineConfig
from flows.corpus_source import corpus_artifact, ingest_questions
from flows.stages import StageRunner
from storage import ArtifactRef, ArtifactStore
from storage.ids import check_artifact_id
from tasks.agent.collect import RESAMPLE_SEED_OFFSET, MergeConfig, ShardConfig, undemonstrated, unsolved
from tasks.agent.oracle import OracleConfig
from tasks.judge.annotate import AnnotateShardConfig, n_shards
from tasks.select.demonstrations import DemonstrationsConfig
from tasks.synthesis.corpus_stage import CorpusSynthesisConfig
from tasks.synthesis.evidence import load_tasks
from tasks.synthesis.pool import PoolExtensionConfig
from tasks.train.sft import TrainConfig


@dataclass(frozen=True)
class TaskSet:
    """What agents are trained and measured on: the search world, its index and the tasks."""

    world: ArtifactRef
    index: ArtifactRef
    tasks: ArtifactRef
    questions: ArtifactRef | None = None  # the user's own question set (eval_questions), if any
    pool: ArtifactRef | None = None  # the grown training pool (pool.extra_tasks), if any

    def for_rounds(self) -> TaskSet:
        """The task set the rounds collect, judge and select on: the grown pool where there is one.
        Its held-out split is this set's, but evaluation reads ``tasks``, whose id it was scored under."""
        return self if self.pool is None else replace(self, tasks=self.pool, pool=None)


@dataclass(frozen=True)
class RoundResult:
    trajectories: ArtifactRef
    annotations: ArtifactRef
    selection: ArtifactRef
    checkpoint: ArtifactRef
    evaluation: ArtifactRef


@dataclass(frozen=True)
class ColdStart:
    demonstrations: ArtifactRef
    checkpoint: ArtifactRef
    evaluation: ArtifactRef


def build_task_set(run: StageRunner, config: PipelineConfig) -> TaskSet:
    if config.corpus is not None:
        world, index, tasks = corpus_tasks(run, config)
    else:
        world = run("world", config.world, {})
        index = run("index", config.index, {"corpus": world})
        tasks = run("synthesize", config.synthesis, {"world": world, "index": index})
    if not run.in_process:
        from tasks.synthesis.report import publish_report

        publish_report(tasks)
    pool = None
    if config.pool.extra_tasks:
        pool = run(
            "extend-pool",
            PoolExtensionConfig(tasks=config.pool.extra_tasks),
            {"world": world, "index": index, "tasks": tasks},
            f"extend pool by {config.pool.extra_tasks}",
        )
    return TaskSet(world, index, tasks, user_questions(run, config, world), pool)


def corpus_tasks(run: StageRunner, config: PipelineConfig) -> tuple[ArtifactRef, ArtifactRef, ArtifactRef]:
    """The user's corpus in place of the world: (corpus, index, tasks). The corpus is stored (or found
    by id) and indexed, and the tasks are read from its pages (``synthesize-corpus``), in lineage
    under both the corpus and its index."""
    corpus = corpus_artifact(run, config.corpus)
    index = run("index", config.index, {"corpus": corpus})
    synthesis = CorpusSynthesisConfig.from_sections(config.corpus_tasks, config.synthesis)
    return corpus, index, run("synthesize-corpus", synthesis, {"corpus": corpus, "index": index})


def user_questions(run: StageRunner, config: PipelineConfig, corpus: ArtifactRef) -> ArtifactRef | None:
    """The question set of ``eval_questions``, resolved against the pages it is about, or None."""
    if config.eval_questions is None:
        return None
    return ingest_questions(run, config.eval_questions, corpus)


def starting_policy(run: StageRunner, config: PipelineConfig, model_id: str | None) -> ArtifactRef:
    """The base model, or an existing model or checkpoint artifact named by id."""
    if model_id is None:
        return run("base-model", config.policy, {})
    return find_artifact(run.store, model_id, ("checkpoint", "model"))


def find_artifact(store: ArtifactStore, artifact_id: str, kinds: tuple[str, ...]) -> ArtifactRef:
    """An existing artifact of one of these kinds, named by an id given from outside (a flow form).

    The id is checked before it is joined to a path, so ``../x`` fails here, not somewhere on disk.
    """
    missing = f"no {' or '.join(kinds)} artifact {artifact_id!r}"
    try:
        check_artifact_id(artifact_id)
    except ValueError as error:
        raise ValueError(f"{missing}: {error}") from None
    for kind in kinds:
        if store.exists(kind, artifact_id):
            return store.ref(kind, artifact_id, reused=True)
    raise ValueError(f"{missing} under {store.root}")


def oracle_demonstrations(run: StageRunner, config: PipelineConfig, task_set: TaskSet) -> ArtifactRef:
    return run(
        "collect-oracle",
        OracleConfig(tools=config.collect.agent.tools),
        {"tasks": task_set.tasks, "index": task_set.index},
    )


def evaluate(run: StageRunner, config: PipelineConfig, policy: ArtifactRef, task_set: TaskSet, label: str):
    return run(
        "evaluate",
        config.evaluate,
        {"model": policy, "tasks": task_set.tasks, "index": task_set.index},
        label,
    )


def collect(
    run: StageRunner,
    config: PipelineConfig,
    policy: ArtifactRef,
    task_set: TaskSet,
    round_index: int,
    demonstrations: list[ArtifactRef] | None = None,
) -> ArtifactRef:
    """Rollouts of the training tasks, in cached shards submitted together, merged into one table.

    With ``collect.skip_demonstrated``, tasks a ``demonstrations`` selection covers are left out; with
    ``collect.resample``, the tasks the first rollouts rarely solved get a second pass of their own.
    """
    sampling = config.collect.sampling()
    sampling["seed"] = config.collect.seed + round_index - 1
    inputs = {"model": policy, "tasks": task_set.tasks, "index": task_set.index}
    train = load_tasks(task_set.tasks, "train")
    pool = len(train)
    if config.collect.skip_demonstrated and demonstrations:
        inputs["demonstrations"] = list(demonstrations)
        # counted as the shards will count them: carried selections may hold more than demonstrations
        pool = len(undemonstrated(train, demonstrations))
    shards = collect_shards(run, sampling, inputs, pool, f"collect r{round_index}", config.collect.shard_size)
    if config.collect.resample:
        shards += resample_shards(run, config, task_set, sampling, inputs, shards, round_index)
    return run("merge-trajectories", MergeConfig(), {"shards": shards}, f"merge r{round_index}")


def collect_shards(
    run: StageRunner, sampling: dict, inputs: dict, tasks: int, label: str, shard_size: int
) -> list[ArtifactRef]:
    count = max(1, math.ceil(tasks / shard_size))
    return run.map(
        "collect-shard",
        [
            (
                ShardConfig(**sampling, shard_index=k, shard_size=shard_size),
                inputs,
                f"{label} shard {k + 1}/{count}",
            )
            for k in range(count)
        ],
    )


def resample_shards(
    run: StageRunner,
    config: PipelineConfig,
    task_set: TaskSet,
    sampling: dict,
    inputs: dict,
    first: list[ArtifactRef],
    round_index: int,
) -> list[ArtifactRef]:
    """More rollouts on the tasks the first pass answered right fewer than ``collect.resample_below``
    times, numbered after the first pass's samples and drawn with their own seed.

    Each first-pass shard gets its own resampling shard (none where every task was solved often
    enough), which reads only that shard: a shard rebuilt after a retry resamples from what it holds.
    """
    below = config.collect.resample_below
    resampling = {
        **sampling,
        "samples_per_task": config.collect.resample,
        "seed": sampling["seed"] + RESAMPLE_SEED_OFFSET,
        "first_sample_index": sampling["samples_per_task"],
        "resample_below": below,
    }
    train = load_tasks(task_set.tasks, "train")
    calls = [
        (
            ShardConfig(**resampling, shard_index=k, shard_size=config.collect.shard_size),
            {**inputs, "sampled": [shard]},
            f"resample r{round_index} shard {k + 1}/{len(first)}",
        )
        for k, shard in enumerate(first)
        if unsolved(train, [shard], below)
    ]
    return run.map("collect-shard", calls) if calls else []


def annotate_and_select(
    run: StageRunner,
    config: PipelineConfig,
    task_set: TaskSet,
    trajectories: ArtifactRef,
    oracle: ArtifactRef | None,
    round_index: int | str,
    select_config=None,
    carried: list[ArtifactRef] | None = None,
) -> tuple[ArtifactRef, ArtifactRef]:
    """Judge every trajectory in cached shards, then keep the best (with ``oracle``, the oracle's where
    a task has none and ``select.oracle_fallback`` is on). ``carried`` are the selections training
    will also take, which ``select.balance_training`` weighs with this round's."""
    pool = [trajectories] if oracle is None else [trajectories, oracle]
    label = round_index if isinstance(round_index, str) else f"r{round_index}"
    annotations = annotate(run, config, task_set, pool, f"annotate {label}")
    select_config = select_config or config.select
    inputs = {"annotations": annotations, "trajectories": pool, "tasks": task_set.tasks}
    if select_config.balance_training and carried:
        inputs["carried"] = list(carried)
    selection = run("select", select_config, inputs, f"select {label}")
    return annotations, selection


def annotate(
    run: StageRunner, config: PipelineConfig, task_set: TaskSet, pool: list[ArtifactRef], label: str
) -> ArtifactRef:
    """Annotation shards submitted together, merged with the judge reliability report."""
    inputs = {"tasks": task_set.tasks, "trajectories": pool}
    count = n_shards(sum(ref.rows for ref in pool), config.annotate.shard_size)
    shards = run.map(
        "annotate-shard",
        [
            (
                AnnotateShardConfig(**config.annotate.model_dump(), shard_index=k),
                inputs,
                f"{label} shard {k + 1}/{count}",
            )
            for k in range(count)
        ],
    )
    annotations = run("annotate", config.annotate, {"shards": shards}, label)
    if not run.in_process:
        from tasks.judge.report import publish_reliability

        publish_reliability(annotations)
    return annotations


def demonstrations(
    run: StageRunner, config: PipelineConfig, base: ArtifactRef, task_set: TaskSet
) -> ArtifactRef:
    """The cold start's demonstrations: oracle gold paths, or a teacher's trajectories that were right."""
    cold = config.cold_start
    if cold.source == "teacher":
        # the teacher samples as the rounds do, without their resampling pass
        teacher = config.model_copy(
            update={"collect": config.collect.model_copy(update={"teacher": cold.teacher, "resample": 0})}
        )
        trajectories = collect(run, teacher, base, task_set, 1)
        correct = config.select.model_copy(update={"max_per_task": 1, "oracle_fallback": False})
        _, pool = annotate_and_select(run, config, task_set, trajectories, None, "teacher", correct)
    else:
        pool = oracle_demonstrations(run, config, task_set)
    return run(
        "demonstrations",
        DemonstrationsConfig(tasks=cold.tasks, seed=cold.seed),
        {"demonstrations": pool, "tasks": task_set.tasks},
        "cold-start demonstrations",
    )


def cold_start(
    run: StageRunner, config: PipelineConfig, base: ArtifactRef, task_set: TaskSet
) -> ColdStart | None:
    """SFT from the base policy on demonstrations, and its held-out score; None when switched off."""
    if config.cold_start.source == "none":
        return None
    demos = demonstrations(run, config, base, task_set)
    policy = run("train", config.cold_start.train, {"model": base, "selection": [demos]}, "train cold start")
    return ColdStart(demos, policy, evaluate(run, config, policy, task_set, "evaluate cold start"))


def training_sets_of(run: StageRunner, policy: ArtifactRef) -> list[ArtifactRef]:
    """The selections a checkpoint was trained on, in order (none for a base model).

    Rounds that continue a checkpoint of an earlier run carry these forward, as the run's own later
    rounds would have: the checkpoint's lineage in the catalog says what they were.
    """
    if policy.kind != "checkpoint":
        return []
    edges = [e for e in run.catalog.edges_of(policy.id) if e["child"] == policy.id]
    roles = sorted(
        (e for e in edges if e["role"] == "selection" or e["role"].startswith("selection[")),
        key=lambda e: int(e["role"][len("selection[") : -1]) if "[" in e["role"] else 0,
    )
    return [run.store.ref("selection", e["parent"], reused=True) for e in roles]


def carried_selections(run: StageRunner, policy: ArtifactRef, start: ColdStart | None) -> list[ArtifactRef]:
    """What round 1 trains on besides its own selection: the cold start's demonstrations, or, for a
    checkpoint given by id, the selections its lineage says it was trained on."""
    return [start.demonstrations] if start is not None else training_sets_of(run, policy)


def round_one_policy(
    run: StageRunner, config: PipelineConfig, model_id: str | None, task_set: TaskSet
) -> tuple[ArtifactRef, ArtifactRef, ColdStart | None]:
    """(base policy, the policy round 1 collects with, the cold start that made it, if any).

    A model id given from outside (a checkpoint of an earlier run) is used as it is; the base model
    goes through its cold start first.
    """
    base = starting_policy(run, config, model_id)
    start = cold_start(run, config, base, task_set) if model_id is None else None
    return base, (start.checkpoint if start else base), start


def run_rounds(
    run: StageRunner,
    config: PipelineConfig,
    policy: ArtifactRef,
    task_set: TaskSet,
    carried: list[ArtifactRef] | None = None,
    steps: list[int] | None = None,
) -> list[RoundResult]:
    """``config.rounds`` rounds of collect -> annotate -> select -> train -> evaluate from ``policy``.

    Each round trains the previous round's policy on every selection so far — the ``carried`` ones
    (the cold-start demonstrations) and each round's kept trajectories — so no round forgets what an
    earlier one taught, and a trajectory kept once keeps counting. ``steps`` gives each round its own
    ``max_steps`` (a later round trains on more), else every round takes ``config.train``'s. With
    ``config.train_from == "start"`` each round instead trains ``policy`` itself afresh, for every
    round's steps so far; round 1 is the same either way.
    """
    oracle = oracle_fallback(run, config, task_set)
    training = list(carried or [])
    start, results = policy, []
    for round_index in range(1, config.rounds + 1):
        result = one_round(
            run, config, task_set, round_index, start, policy, carried, training, oracle, steps
        )
        training.append(result.selection)
        policy = result.checkpoint
        results.append(result)
    return results


def one_round(
    run: StageRunner,
    config: PipelineConfig,
    task_set: TaskSet,
    round_index: int,
    start: ArtifactRef,
    policy: ArtifactRef,
    carried: list[ArtifactRef] | None,
    training: list[ArtifactRef],
    oracle: ArtifactRef | None,
    steps: list[int] | None,
    name: str = "",
) -> RoundResult:
    """Round ``round_index`` from ``policy``: collect, annotate, select, train on ``training`` and what
    it kept, evaluate. ``name`` tells a second draw of the round apart in labels."""
    label = f"r{round_index} {name}" if name else f"r{round_index}"
    pool = task_set.for_rounds()
    trajectories = collect(run, config, policy, pool, round_index, carried)
    annotations, selection = annotate_and_select(
        run, config, pool, trajectories, oracle, label, carried=training
    )
    policy = train_round(
        run, config, steps, round_index, start, policy, [*training, selection], f"train {label}"
    )
    evaluation = evaluate(run, config, policy, task_set, f"evaluate {label}")
    return RoundResult(trajectories, annotations, selection, policy, evaluation)


def oracle_fallback(run: StageRunner, config: PipelineConfig, task_set: TaskSet) -> ArtifactRef | None:
    """The oracle's trajectories on the tasks the rounds sample, for ``select.oracle_fallback``."""
    if not config.select.oracle_fallback:
        return None
    return oracle_demonstrations(run, config, task_set.for_rounds())


def train_round(
    run: StageRunner,
    config: PipelineConfig,
    steps: list[int] | None,
    round_index: int,
    start: ArtifactRef,
    previous: ArtifactRef,
    training: list[ArtifactRef],
    label: str,
) -> ArtifactRef:
    """Round ``round_index``'s policy: ``previous`` trained for this round's steps on every selection
    so far, or with ``config.train_from == "start"``, ``start`` trained afresh for every round's steps."""
    if config.train_from == "start":
        model, train_config = start, restart_train(config, steps, round_index)
    else:
        model, train_config = previous, round_train(config, steps, round_index)
    return run("train", train_config, {"model": model, "selection": list(training)}, label)


def round_train(config: PipelineConfig, steps: list[int] | None, round_index: int) -> TrainConfig:
    if steps is None:
        return config.train
    if len(steps) != config.rounds:
        raise ValueError(f"{len(steps)} step counts for {config.rounds} rounds")
    return config.train.model_copy(update={"max_steps": steps[round_index - 1]})


def restart_train(config: PipelineConfig, steps: list[int] | None, round_index: int) -> TrainConfig:
    """A round trained afresh from the start takes the steps of every round so far: its policy has
    trained as long since the start as a continued round's, so the two (and the control) compare."""
    total = sum(round_train(config, steps, i).max_steps for i in range(1, round_index + 1))
    return round_train(config, steps, round_index).model_copy(update={"max_steps": total})


def control_arm(
    run: StageRunner,
    config: PipelineConfig,
    start: ColdStart,
    task_set: TaskSet,
    steps: list[int] | None = None,
    name: str = "",
) -> tuple[ArtifactRef, ArtifactRef]:
    """The cold-start policy trained for the rounds' steps on the cold-start data only.

    Same schedule, same number of training runs: what the rounds add beyond training longer.
    ``name`` tells a second control (another training seed, say) apart in progress and labels.
    """
    suffix = f" {name}" if name else ""
    policy = start.checkpoint
    for round_index in range(1, config.rounds + 1):
        policy = run(
            "train",
            round_train(config, steps, round_index),
            {"model": policy, "selection": [start.demonstrations]},
            f"train control{suffix} {round_index}",
        )
    return policy, evaluate(run, config, policy, task_set, f"evaluate control{suffix}")


def retrained_rounds(
    run: StageRunner,
    config: PipelineConfig,
    start: ColdStart,
    task_set: TaskSet,
    rounds: list[RoundResult],
    steps: list[int] | None = None,
    name: str = "",
) -> tuple[ArtifactRef, ArtifactRef]:
    """The rounds' training done again under ``config.train`` (another training seed, say) on the same
    kept trajectories, and the last round's policy scored.

    The control arm's question asked of the rounds: how far training noise alone moves their score.
    What the rounds collected is held fixed, so only training varies, as it does between controls; with
    the rounds' own config every call is the rounds' own cached training.
    """
    suffix = f" {name}" if name else ""
    training, policy = [start.demonstrations], start.checkpoint
    for round_index, result in enumerate(rounds, 1):
        training.append(result.selection)
        if config.train_from == "start" and round_index < len(rounds):
            continue  # afresh, only the last round's training makes the policy scored
        label = f"train r{round_index}{suffix}"
        policy = train_round(run, config, steps, round_index, start.checkpoint, policy, training, label)
    return policy, evaluate(run, config, policy, task_set, f"evaluate r{len(rounds)}{suffix}")


def recollected_round(
    run: StageRunner,
    config: PipelineConfig,
    start: ColdStart,
    task_set: TaskSet,
    rounds: list[RoundResult],
    steps: list[int] | None = None,
    name: str = "",
) -> RoundResult:
    """The last round drawn again under ``config.collect.seed`` (another sampling seed, say): from the
    same previous policy, with the same earlier rounds' selections carried, its rollouts new.

    Retrained rounds hold the rollouts fixed; this is the other half of a round's noise, what drawing
    its rollouts again moves. Under the rounds' own config it is the last round's own cached stages.
    """
    earlier = rounds[:-1]
    policy = earlier[-1].checkpoint if earlier else start.checkpoint
    training = [start.demonstrations, *(r.selection for r in earlier)]
    oracle = oracle_fallback(run, config, task_set)
    return one_round(
        run,
        config,
        task_set,
        len(rounds),
        start.checkpoint,
        policy,
        [start.demonstrations],
        training,
        oracle,
        steps,
        name,
    )
