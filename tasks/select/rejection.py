"""Rejection sampling: keep the best correct trajectories, a few per task.

A trajectory is kept when its answer is right and its steps rate well (SRR-Judge defaults: mean
rating >= 3.5 and no step rated 1), and, when ``filter_reward`` names a reward, that reward reaches
``min_reward`` (a reward that could not be computed keeps nothing). Kept ones are ranked by
``rank_by``: the mean step rating, or any reward column. Tasks where the policy produced nothing
worth keeping fall back to the oracle's demonstration, which is what lets the first round start
from a policy that cannot yet follow the protocol at all.

With ``refined_targets``, a rejected policy trajectory whose step judge rewrote a flawed step (rated
below ``refine_below``) becomes a training example: its steps before that one, then the judge's
refined thought and action as the target (SRR-Judge's refined steps as SFT targets). What came after
the flawed step is dropped: it followed an action the refined step replaces.

Every filter's toll is counted (``filter_counts``: how many policy trajectories each one removed, in
the order they apply), and tasks the policy solves rarely can be oversampled: their kept
trajectories carry ``copies`` > 1, which training repeats (hard-task focus).

A policy solves easy buckets far more often than hard ones, so its kept trajectories lean towards
them (two-hop chains were two thirds of a round's selection on a pool where they are a quarter,
and three-hop chains fell after training on it). ``balance_buckets`` raises the copies
of under-represented buckets until each bucket weighs in training what it weighs in the pool.

Within a bucket the kinds of question differ as much, and a small policy learns which hop a question
wants next largely from how often each kind occurs in training. A round trains on everything carried
so far plus what it kept, and the policy keeps most of the kinds it already solves: where it solved
chains ending in a country easily, they were 47% of round 1's training set on a pool where they are
34%, and the trained policy then looked up a country at the end of tool and re-converging questions
alike. ``balance_training`` weighs the whole training set: each kind of question (bucket and what it
asks for, the relation of the gold path's last hop) gets the copies that bring it to its pool share,
the cold-start demonstrations of the kinds the policy did not solve included. Those raised copies of
carried trajectories are rows of the round's selection with reason ``rebalanced``; training takes a
trajectory's largest copies over its selections.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Annotation, Judgement, Rewards, Selection, Step, Task, Trajectory
from storage.store import read_rows, write_table
from tasks.agent.oracle import COLD_START_REASON, ORACLE
from tasks.agent.protocol import assistant_message, parse_turn
from tasks.rewards.combine import RewardName
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.evidence import load_tasks


class SelectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_mean_rating: float = Field(
        3.5, ge=1, le=5, description="Keep trajectories whose mean step rating is at least this."
    )
    min_step_rating: int = Field(
        3, ge=1, le=5, description="Reject trajectories with any step rated below this."
    )
    max_per_task: int = Field(2, ge=1, le=100, description="Trajectories kept per task at most.")
    oracle_fallback: bool = Field(
        False,
        description="Use the oracle demonstration for tasks with no kept trajectory (the cold start "
        "already trains on demonstrations; this adds them to every round's selection).",
    )
    rank_by: Literal["mean_rating", "outcome", "f1", "search_r2", "reagent", "rubric"] = Field(
        "mean_rating", description="Order of the kept trajectories of a task: mean step rating or a reward."
    )
    filter_reward: RewardName | None = Field(
        None, description="Also require this reward (a column of the rewards table) to reach min_reward."
    )
    min_reward: float = Field(0.0, ge=0, le=10, description="Threshold for filter_reward.")
    refined_targets: bool = Field(
        False,
        description="Turn rejected trajectories with a judge-refined flawed step into training examples "
        "ending at the refined step.",
    )
    refine_below: int = Field(
        3, ge=2, le=5, description="refined_targets: a step rated below this is flawed."
    )
    hard_task_solve_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A task whose policy samples are right at most this often counts as hard.",
    )
    hard_task_copies: int = Field(
        1,
        ge=1,
        le=16,
        description="Copies of a hard task's kept trajectories in training (1: no oversampling).",
    )
    balance_buckets: bool = Field(
        False,
        description="Give the kept trajectories of difficulty buckets the policy solves less than their "
        "share of the pool more copies (up to max_bucket_copies), so training sees the pool's bucket mix.",
    )
    balance_training: bool = Field(
        False,
        description="Weigh the whole training set (the carried selections and this round's kept "
        "trajectories) so each kind of question, its bucket and what it asks for, weighs what it weighs "
        "in the training pool; copies are only raised, up to max_bucket_copies.",
    )
    max_bucket_copies: int = Field(
        4, ge=1, le=16, description="balance_buckets, balance_training: copies of one trajectory at most."
    )


# the filters in the order they apply; a trajectory is counted under the first that removes it
FILTERS = (
    "wrong_answer",
    "unjudged",
    "bad_step",
    "low_mean_rating",
    "reward_unknown",
    "low_reward",
    "over_max_per_task",
)


def keep_reason(
    annotation: Annotation, config: SelectConfig, rewards: Rewards | None = None
) -> tuple[bool, str]:
    if annotation.exact_match < 1:
        return False, "wrong_answer"
    if not annotation.judged:
        return False, "unjudged"
    if annotation.min_rating < config.min_step_rating:
        return False, "bad_step"
    if annotation.mean_rating < config.min_mean_rating:
        return False, "low_mean_rating"
    if config.filter_reward:
        value = getattr(rewards, config.filter_reward) if rewards else None
        if value is None:
            return False, "reward_unknown"
        if value < config.min_reward:
            return False, "low_reward"
    return True, "correct_and_well_rated"


def tool_errors(trajectory: Trajectory | None) -> int:
    """Steps that failed as actions: malformed turns and tool calls the tools refused."""
    if trajectory is None:
        return 0
    return sum(step.action == "invalid" or step.tool_error is not None for step in trajectory.steps)


def _rank(
    a: Annotation, config: SelectConfig, rewards: dict[str, Rewards], trajectories: dict[str, Trajectory]
) -> tuple:
    """Best first: the ranking value, then the mean rating, fewer tool errors, a shorter path."""
    if config.rank_by == "mean_rating":
        value = a.mean_rating
    else:
        value = getattr(rewards.get(a.trajectory_id), config.rank_by, None) or 0.0
    errors = tool_errors(trajectories.get(a.trajectory_id))
    return (-value, -a.mean_rating, errors, len(a.step_ratings), a.tool_calls, a.trajectory_id)


def solve_rates(annotations: list[Annotation]) -> dict[str, float]:
    """Per task, the share of the policy's samples that answered right."""
    right: dict[str, list[float]] = defaultdict(list)
    for a in annotations:
        if a.policy != ORACLE:
            right[a.task_id].append(a.exact_match >= 1)
    return {task: sum(v) / len(v) for task, v in right.items()}


def select(
    annotations: list[Annotation],
    config: SelectConfig,
    rewards: list[Rewards] | None = None,
    trajectories: dict[str, Trajectory] | None = None,
) -> list[Selection]:
    return select_with_counts(annotations, config, rewards, trajectories)[0]


def select_with_counts(
    annotations: list[Annotation],
    config: SelectConfig,
    rewards: list[Rewards] | None = None,
    trajectories: dict[str, Trajectory] | None = None,
    buckets: dict[str, str] | None = None,
) -> tuple[list[Selection], dict[str, int]]:
    """The kept trajectories, and how many policy trajectories each filter removed.

    ``buckets`` (task id -> difficulty bucket) is needed for ``balance_buckets``.
    """
    by_id = {r.trajectory_id: r for r in rewards or []}
    trajectories = trajectories or {}
    by_task: dict[str, list[Annotation]] = defaultdict(list)
    oracle: dict[str, Annotation] = {}
    removed = dict.fromkeys(FILTERS, 0)
    for a in annotations:
        if a.policy == ORACLE:
            oracle[a.task_id] = a
            continue
        kept, reason = keep_reason(a, config, by_id.get(a.trajectory_id))
        if kept:
            by_task[a.task_id].append(a)
        else:
            removed[reason] += 1
    rates = solve_rates(annotations)
    chosen = []
    for task_id in sorted(set(by_task) | set(oracle)):
        kept = sorted(by_task.get(task_id, []), key=lambda a: _rank(a, config, by_id, trajectories))
        removed["over_max_per_task"] += max(len(kept) - config.max_per_task, 0)
        hard = rates.get(task_id, 1.0) <= config.hard_task_solve_rate
        for a in kept[: config.max_per_task]:
            chosen.append(
                Selection(
                    trajectory_id=a.trajectory_id,
                    task_id=task_id,
                    source="policy",
                    reason="correct_and_well_rated",
                    solve_rate=rates.get(task_id),
                    copies=config.hard_task_copies if hard else 1,
                )
            )
        if not kept and config.oracle_fallback and task_id in oracle:
            chosen.append(
                Selection(
                    trajectory_id=oracle[task_id].trajectory_id,
                    task_id=task_id,
                    source="oracle",
                    reason=COLD_START_REASON,
                )
            )
    if config.balance_buckets:
        if buckets is None:
            raise ValueError("balance_buckets needs the tasks' buckets")
        chosen = balanced(chosen, sorted(rates), buckets, config.max_bucket_copies)
    return chosen, removed


def underweight(weight: Counter[str], pool: Counter[str]) -> dict[str, float]:
    """Per group with weight, its share of the pool over its share of the training weight: above 1
    where training underweights it against the pool."""
    pool_total, total = sum(pool.values()), sum(weight.values())
    return {group: (pool[group] / pool_total) / (w / total) for group, w in weight.items() if w}


def raised_copies(copies: int, factor: float, max_copies: int) -> int:
    """Copies scaled by ``factor``, capped at ``max_copies``, and never lowered: nothing kept is dropped."""
    return max(copies, min(round(copies * factor), max_copies))


def balanced(
    chosen: list[Selection], pool: list[str], buckets: dict[str, str], max_copies: int
) -> list[Selection]:
    """``chosen`` with copies raised for buckets whose weight in training is below their pool share.

    A bucket's weight is the sum of its kept copies over all kept copies; its pool share is its share
    of the tasks the policy was sampled on. Copies are only ever raised (a bucket over its share keeps
    what it has), so no kept trajectory is dropped.
    """
    weight = Counter()
    for s in chosen:
        weight[buckets[s.task_id]] += s.copies
    if not sum(weight.values()):
        return chosen
    factor = underweight(weight, Counter(buckets[task] for task in pool))
    return [
        s.model_copy(update={"copies": raised_copies(s.copies, factor[buckets[s.task_id]], max_copies)})
        for s in chosen
    ]


REBALANCED = "rebalanced"


def question_kind(task: Task) -> str:
    """A task's bucket and what its question asks for (the relation of its gold path's last hop)."""
    return f"{task.bucket}/{task.hops[-1].relation}" if task.hops else task.bucket


def rebalanced(
    chosen: list[Selection], carried: list[Selection], kinds: dict[str, str], max_copies: int
) -> list[Selection]:
    """``chosen`` with copies raised, plus ``rebalanced`` rows raising carried trajectories' copies, so
    every kind of question weighs in the whole training set what it weighs among ``kinds`` (task id ->
    kind, the training pool).

    Weights count each trajectory once with its largest copies, as training does. Copies are only
    raised, relative to the kind furthest over its share (it keeps its copies), and capped at
    ``max_copies``; a kind with nothing to train on stays absent.
    """
    copies: dict[str, int] = {}
    row: dict[str, Selection] = {}
    for s in [*carried, *chosen]:
        if s.task_id in kinds and s.copies >= copies.get(s.trajectory_id, 0):
            copies[s.trajectory_id], row[s.trajectory_id] = s.copies, s
    weight = Counter()
    for tid, n in copies.items():
        weight[kinds[row[tid].task_id]] += n
    if not weight:
        return chosen
    factor = underweight(weight, Counter(kinds.values()))
    most_over = min(factor.values())

    def raised(s: Selection) -> int:
        if s.task_id not in kinds:
            return s.copies
        return raised_copies(s.copies, factor[kinds[s.task_id]] / most_over, max_copies)

    out = [s.model_copy(update={"copies": raised(s)}) for s in chosen]
    mine = {s.trajectory_id for s in chosen}
    for tid, s in sorted(row.items()):
        if tid not in mine and raised(s) > s.copies:
            out.append(s.model_copy(update={"copies": raised(s), "reason": REBALANCED}))
    return out


def refined_example(trajectory: Trajectory, judgement: Judgement, below: int) -> Trajectory | None:
    """The trajectory up to its first flawed step that the judge refined, that step replaced."""
    refined = {r["step"]: r for r in json.loads(judgement.refined_json)}
    ratings = judgement.step_ratings
    step = next((i for i, r in enumerate(ratings) if r < below and i in refined), None)
    if step is None or len(ratings) != len(trajectory.steps):
        return None
    raw = f"<think>{refined[step]['thought']}</think>\n{refined[step]['action']}"
    turn = parse_turn(raw)
    messages = json.loads(trajectory.messages_json)
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    kept = messages[: assistant[step]] if step < len(assistant) else messages
    new_id = hashlib.sha256(f"{trajectory.id}|refined|{step}".encode()).hexdigest()[:16]
    return trajectory.model_copy(
        update={
            "id": new_id,
            "messages_json": json.dumps([*kept, assistant_message(turn, raw)]),
            "steps": [
                *trajectory.steps[:step],
                Step(index=step, thought=turn.thought, action=turn.action, argument=turn.argument, raw=raw),
            ],
            "final_answer": turn.argument if turn.action == "answer" else None,
            "finished": turn.action == "answer",
            "parent_id": trajectory.id,
            "cut_step": step,
            "error": None,
        }
    )


def refined_examples(
    annotations: list[Annotation],
    judgements: list[Judgement],
    trajectories: dict[str, Trajectory],
    selections: list[Selection],
    config: SelectConfig,
) -> tuple[list[Selection], list[Trajectory]]:
    steps = {(j.trajectory_id, j.judge): j for j in judgements if j.family == "step"}
    taken = {s.trajectory_id for s in selections}
    per_task = defaultdict(int, {})
    for s in selections:
        per_task[s.task_id] += s.source == "policy"
    chosen, examples = [], []
    for a in sorted(annotations, key=lambda a: a.trajectory_id):
        judgement = steps.get((a.trajectory_id, a.judge))
        source = trajectories.get(a.trajectory_id)
        if a.policy == ORACLE or a.trajectory_id in taken or judgement is None or source is None:
            continue
        if source.error is not None or per_task[a.task_id] >= config.max_per_task:
            continue
        example = refined_example(source, judgement, config.refine_below)
        if example is None:
            continue
        per_task[a.task_id] += 1
        examples.append(example)
        chosen.append(
            Selection(trajectory_id=example.id, task_id=a.task_id, source="refined", reason="refined_step")
        )
    return chosen, examples


def produce_selection(work: Path, config: SelectConfig, inputs: Inputs, store: ArtifactStore) -> None:
    annotations = read_rows(inputs["annotations"], Annotation)
    trajectories = {t.id: t for source in inputs["trajectories"] for t in read_rows(source, Trajectory)}
    rewards = read_rows(inputs["annotations"], Rewards, "rewards")
    tasks = load_tasks(inputs["tasks"], "train") if "tasks" in inputs else None
    buckets = {t.id: t.bucket for t in tasks} if tasks is not None else None
    selections, removed = select_with_counts(annotations, config, rewards, trajectories, buckets)
    picked = {s.trajectory_id for s in selections}
    # The SFT set travels with the selection, so training reads one artifact.
    chosen = [t for t in trajectories.values() if t.id in picked]
    if config.refined_targets:
        judgements = read_rows(inputs["annotations"], Judgement, "judgements")
        extra, examples = refined_examples(annotations, judgements, trajectories, selections, config)
        selections += extra
        chosen += examples
    if config.balance_training:
        if tasks is None:
            raise ValueError("balance_training needs the tasks")
        carried = [row for ref in inputs.get("carried", []) for row in read_rows(ref, Selection)]
        kinds = {t.id: question_kind(t) for t in tasks}
        selections = rebalanced(selections, carried, kinds, config.max_bucket_copies)
    write_table(work, selections)
    write_table(work, chosen, name="trajectories")
    policy = sum(a.policy != ORACLE for a in annotations)
    write_table(work, filter_rows(policy, removed, selections), name="filters")


class FilterCount(BaseModel):
    """One filter's toll: ``removed`` policy trajectories, ``remaining`` after it."""

    filter: str
    removed: int
    remaining: int


def filter_rows(
    policy_trajectories: int, removed: dict[str, int], selections: list[Selection]
) -> list[FilterCount]:
    rows, remaining = [], policy_trajectories
    for name in FILTERS:
        remaining -= removed[name]
        rows.append(FilterCount(filter=name, removed=removed[name], remaining=remaining))
    kept = sum(s.source == "policy" and s.reason != REBALANCED for s in selections)
    if remaining != kept:
        raise AssertionError(f"selection bookkeeping: {remaining} left after the filters, {kept} kept")
    return rows


STAGE = Stage(name="select", kind="selection", produce=produce_selection, config_model=SelectConfig)
