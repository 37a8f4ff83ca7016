"""Which held-out tasks flipped between two evaluations, where, and what each policy did on them.

A pass@1 that moves from 33% to 42% can be four tasks gained and three lost; the headline hides
both the churn and where it happened. :func:`compare` pairs two evaluations task by task on their
first (greedy) sample, the one pass@1 scores, and counts wrong→right and right→wrong flips per
difficulty bucket, hard vs easy, and tool-augmented vs not. :func:`format_comparison` lists the
flipped tasks and can show both trajectories of a flip side by side (question, gold answer, each
side's actions and final answer), which is where a regression is understood.

The tasks come through lineage: the catalog knows which tasks artifact each evaluation was scored
on. Two evaluations of different task sets are compared on the tasks they share, and the tasks only
one of them scored are counted, never silently dropped.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from itertools import zip_longest
from typing import Literal

from pydantic import BaseModel, Field

from storage import ArtifactRef, ArtifactStore, Catalog
from storage.schemas import EvalRow, Row, Task, Trajectory
from storage.store import read_rows
from tasks.evaluate.buckets import first_samples, task_slices
from tasks.evaluate.failures import FAILURE_KINDS, FailureKind, failure_counts, failure_kinds
from tasks.evaluate.significance import PairedDifference, paired_difference
from tasks.synthesis.evidence import load_tasks

# Slices of task_slices shown per comparison: the bucket itself, hard vs easy, and tool use (the
# bucket's hops, k and MSD are each a coarser view of the bucket).
DIMENSIONS = ("bucket", "difficulty", "tool")
Direction = Literal["wrong_to_right", "right_to_wrong"]
DIRECTION_TEXT: dict[str, str] = {"wrong_to_right": "wrong → right", "right_to_wrong": "right → wrong"}


class Flip(Row):
    """A task one evaluation got right and the other wrong."""

    task_id: str
    direction: Direction
    bucket: str
    tool: bool = Field(description="Tool-augmented: the answer needs a calculation.")
    question: str
    answer: str
    trajectory_a: str
    trajectory_b: str
    answer_a: str | None = Field(description="A's final answer (None: it never answered).")
    answer_b: str | None
    kind_a: FailureKind = Field(description="How A's trajectory went (see tasks.evaluate.failures).")
    kind_b: FailureKind


class SliceFlips(Row):
    """Counts over the shared tasks whose ``dimension`` has ``value``."""

    dimension: str
    value: str
    tasks: int
    right_a: int
    right_b: int
    wrong_to_right: int
    right_to_wrong: int
    paired: PairedDifference = Field(description="B's pass@1 minus A's on this slice, paired task by task.")


class Comparison(Row):
    evaluation_a: str
    evaluation_b: str
    policy_a: str
    policy_b: str
    tasks_a: str = Field(description="The tasks artifact A was scored on.")
    tasks_b: str
    compared: int = Field(description="Tasks both evaluations scored.")
    only_in_a: list[str] = Field(default_factory=list, description="Task ids only A scored.")
    only_in_b: list[str] = Field(default_factory=list)
    right_a: int
    right_b: int
    wrong_to_right: int
    right_to_wrong: int
    paired: PairedDifference = Field(
        description="B's pass@1 minus A's on the shared tasks, its paired bootstrap interval and McNemar p."
    )
    slices: list[SliceFlips]
    flips: list[Flip]
    failures_a: dict[str, int] = Field(description="Shared tasks per failure kind of A's greedy sample.")
    failures_b: dict[str, int]


class Evaluation(BaseModel):
    """One evaluation artifact as a comparison reads it: rows, greedy trajectories and its tasks."""

    ref: ArtifactRef
    tasks_id: str
    rows: list[EvalRow]
    trajectories: dict[str, Trajectory]
    tasks: dict[str, Task]

    @property
    def policy(self) -> str:
        return self.rows[0].policy if self.rows else ""


def tasks_input(catalog: Catalog, evaluation_id: str) -> str:
    """The id of the tasks artifact an evaluation was scored on, from its lineage edges."""
    parents = [
        e["parent"]
        for e in catalog.edges_of(evaluation_id)
        if e["child"] == evaluation_id and e["role"] == "tasks"
    ]
    if not parents:
        raise ValueError(
            f"the catalog records no tasks input for evaluation {evaluation_id}: it was not built by a "
            "Trailforge flow in this store, so which tasks it scored is unknown"
        )
    return parents[0]


def load_evaluation(store: ArtifactStore, catalog: Catalog, evaluation_id: str) -> Evaluation:
    """An evaluation's rows and trajectories, and the tasks lineage says it was scored on.

    The tasks are read from the artifact the catalog names, not guessed from ids in the rows, so
    buckets and gold answers are the ones that evaluation was scored against.
    """
    if not store.exists("evaluation", evaluation_id):
        raise ValueError(f"no evaluation artifact {evaluation_id!r} under {store.root}")
    ref = store.ref("evaluation", evaluation_id)
    tasks_id = tasks_input(catalog, evaluation_id)
    if not store.exists("tasks", tasks_id):
        raise ValueError(
            f"evaluation {evaluation_id} was scored on tasks {tasks_id}, which is no longer stored"
        )
    return Evaluation(
        ref=ref,
        tasks_id=tasks_id,
        rows=read_rows(ref, EvalRow),
        trajectories={t.id: t for t in read_rows(ref, Trajectory, name="trajectories")},
        tasks={t.id: t for t in load_tasks(store.ref("tasks", tasks_id))},
    )


def compare(a: Evaluation, b: Evaluation) -> Comparison:
    """Pair the two evaluations' first samples task by task; count and list what flipped."""
    first_a, first_b = first_samples(a.rows), first_samples(b.rows)
    shared = sorted(first_a.keys() & first_b.keys())
    tasks = {**b.tasks, **a.tasks}
    kinds_a = failure_kinds([first_a[t] for t in shared], a.trajectories, tasks)
    kinds_b = failure_kinds([first_b[t] for t in shared], b.trajectories, tasks)
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    outcomes: dict[tuple[str, str], tuple[list[bool], list[bool]]] = defaultdict(lambda: ([], []))
    flips = []
    for task_id in shared:
        row_a, row_b = first_a[task_id], first_b[task_id]
        right_a, right_b = row_a.exact_match == 1.0, row_b.exact_match == 1.0
        task = tasks[task_id]
        for key in task_slices(task):
            if key[0] in DIMENSIONS:
                slot = counts[key]
                slot["tasks"] += 1
                slot["right_a"] += right_a
                slot["right_b"] += right_b
                slot["wrong_to_right"] += right_b and not right_a
                slot["right_to_wrong"] += right_a and not right_b
                outcomes[key][0].append(right_a)
                outcomes[key][1].append(right_b)
        if right_a != right_b:
            flips.append(
                Flip(
                    task_id=task_id,
                    direction="wrong_to_right" if right_b else "right_to_wrong",
                    bucket=task.bucket,
                    tool=bool(task.calculation),
                    question=task.question,
                    answer=task.answer,
                    trajectory_a=row_a.trajectory_id,
                    trajectory_b=row_b.trajectory_id,
                    answer_a=_final_answer(a, row_a),
                    answer_b=_final_answer(b, row_b),
                    kind_a=kinds_a[task_id],
                    kind_b=kinds_b[task_id],
                )
            )
    slices = [
        SliceFlips(
            dimension=dimension, value=value, paired=paired_difference(*outcomes[dimension, value]), **slot
        )
        for (dimension, value), slot in sorted(
            counts.items(), key=lambda kv: (DIMENSIONS.index(kv[0][0]), kv[0][1])
        )
    ]
    return Comparison(
        evaluation_a=a.ref.id,
        evaluation_b=b.ref.id,
        policy_a=a.policy,
        policy_b=b.policy,
        tasks_a=a.tasks_id,
        tasks_b=b.tasks_id,
        compared=len(shared),
        only_in_a=sorted(first_a.keys() - first_b.keys()),
        only_in_b=sorted(first_b.keys() - first_a.keys()),
        right_a=sum(first_a[t].exact_match == 1.0 for t in shared),
        right_b=sum(first_b[t].exact_match == 1.0 for t in shared),
        wrong_to_right=sum(f.direction == "wrong_to_right" for f in flips),
        right_to_wrong=sum(f.direction == "right_to_wrong" for f in flips),
        paired=paired_difference(
            [first_a[t].exact_match == 1.0 for t in shared], [first_b[t].exact_match == 1.0 for t in shared]
        ),
        slices=slices,
        flips=sorted(flips, key=lambda f: (f.direction != "wrong_to_right", f.bucket, f.task_id)),
        failures_a=failure_counts(kinds_a),
        failures_b=failure_counts(kinds_b),
    )


def _final_answer(evaluation: Evaluation, row: EvalRow) -> str | None:
    trajectory = evaluation.trajectories.get(row.trajectory_id)
    return trajectory.final_answer if trajectory else None


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def format_comparison(
    comparison: Comparison, a: Evaluation, b: Evaluation, show: int = 0, width: int = 120
) -> str:
    """Headline, counts per slice, the flipped tasks, and ``show`` of them side by side."""
    c = comparison
    lines = [
        f"A  {c.evaluation_a}  policy {c.policy_a}  (tasks {c.tasks_a})",
        f"B  {c.evaluation_b}  policy {c.policy_b}  (tasks {c.tasks_b})",
        f"{c.compared} tasks scored by both"
        + (
            f"; only in A: {len(c.only_in_a)}, only in B: {len(c.only_in_b)} (not compared)"
            if c.only_in_a or c.only_in_b
            else ""
        ),
        f"pass@1 on them: A {_percent(c.right_a, c.compared)}, B {_percent(c.right_b, c.compared)}"
        f"  |  wrong→right {c.wrong_to_right}, right→wrong {c.right_to_wrong}, "
        f"unchanged {c.compared - c.wrong_to_right - c.right_to_wrong}",
        c.paired.text(),
        "",
        f"{'slice':24s} {'tasks':>5s} {'A right':>8s} {'B right':>8s} "
        f"{'wrong→right':>12s} {'right→wrong':>12s}  {'B − A, paired 95% CI':>24s} {'McNemar p':>9s}",
    ]
    for s in c.slices:
        d = s.paired
        interval = f"{100 * d.difference:+.1f} [{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}]"
        lines.append(
            f"{s.dimension + ' ' + s.value:24s} {s.tasks:5d} {s.right_a:8d} {s.right_b:8d} "
            f"{s.wrong_to_right:12d} {s.right_to_wrong:12d}  {interval:>24s} {d.mcnemar_p:9.3g}"
        )
    lines += ["", "how the greedy answers went (tasks.evaluate.failures):", f"{'':16s} {'A':>5s} {'B':>5s}"]
    lines += [f"{kind:16s} {c.failures_a[kind]:5d} {c.failures_b[kind]:5d}" for kind in FAILURE_KINDS]
    for direction, title in DIRECTION_TEXT.items():
        flipped = [f for f in c.flips if f.direction == direction]
        lines += ["", f"{title} ({len(flipped)}):"]
        for f in flipped:
            tool = " tool" if f.tool else ""
            wrong = f.kind_a if direction == "wrong_to_right" else f.kind_b
            lines.append(
                f"  {f.task_id}  {f.bucket}{tool}  gold {f.answer!r}  A {f.answer_a!r}  B {f.answer_b!r}  "
                f"({wrong})  {textwrap.shorten(f.question, 60)}"
            )
    for f in c.flips[:show]:
        lines += ["", *side_by_side(f, a, b, width)]
    return "\n".join(lines)


def side_by_side(flip: Flip, a: Evaluation, b: Evaluation, width: int = 120) -> list[str]:
    """One flipped task: question and gold answer, then A's and B's steps in two columns."""
    task = {**b.tasks, **a.tasks}[flip.task_id]
    gold = " | ".join([task.answer, *task.aliases])
    lines = [
        "=" * width,
        f"{flip.task_id}  {flip.bucket}{'  tool-augmented' if flip.tool else ''}  "
        f"{DIRECTION_TEXT[flip.direction]}",
        *textwrap.wrap(f"question: {task.question}", width),
        *textwrap.wrap(f"gold: {gold}", width),
        "-" * width,
    ]
    column = (width - 3) // 2
    left = _trajectory_cells(a, flip.trajectory_a, "A", flip.direction == "right_to_wrong", column)
    right = _trajectory_cells(b, flip.trajectory_b, "B", flip.direction == "wrong_to_right", column)
    for l_line, r_line in zip_longest(left, right, fillvalue=""):
        lines.append(f"{l_line:<{column}} | {r_line}")
    return lines


def _trajectory_cells(
    evaluation: Evaluation, trajectory_id: str, side: str, right: bool, column: int
) -> list[str]:
    trajectory = evaluation.trajectories.get(trajectory_id)
    cells = [f"{side} ({'right' if right else 'wrong'})"]
    if trajectory is None:
        return [*cells, f"trajectory {trajectory_id} is not stored"]
    for step in trajectory.steps:
        text = step.argument if step.action != "invalid" else step.raw
        cells += textwrap.wrap(f"{step.index + 1}. {step.action}: {' '.join(text.split())}", column) or [""]
    cells += textwrap.wrap(f"final: {trajectory.final_answer!r}", column)
    if trajectory.error:
        cells += textwrap.wrap(f"error: {trajectory.error}", column)
    return cells
