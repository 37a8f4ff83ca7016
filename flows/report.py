"""The round report: per round, held-out scores (overall and by bucket), what selection kept and
why, and how training went; plus what each stage did (ran or reused)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from flows.stages import StageEvent
from storage import ArtifactRef
from storage.schemas import EvalRow, EvalSummary, Selection, Trajectory
from storage.store import read_rows
from tasks.evaluate.buckets import BucketScore
from tasks.evaluate.failures import FAILURE_KINDS, failure_counts, failure_kinds
from tasks.evaluate.significance import PairedDifference, greedy_outcomes, paired_outcomes
from tasks.evaluate.summary import load_buckets, load_summary
from tasks.select.rejection import REBALANCED, FilterCount
from tasks.synthesis.evidence import load_tasks


class RoundEntry(BaseModel):
    """One policy of the run (base, cold start, round r) and how it was made."""

    label: str
    summary: EvalSummary
    evaluation_id: str
    buckets: list[BucketScore] = Field(default_factory=list)
    selection_id: str | None = None
    kept: int | None = Field(None, description="Trajectories this round's selection (or cold start) added.")
    filters: list[FilterCount] = Field(default_factory=list)
    checkpoint_id: str | None = None
    training: dict | None = Field(None, description="The checkpoint's train_metrics.json.")
    user_questions: EvalSummary | None = Field(
        None, description="The same policy on the user's own question set (eval_questions)."
    )
    user_questions_id: str | None = None
    greedy_right: dict[str, bool] = Field(
        default_factory=dict, exclude=True, description="Held-out task id -> its greedy sample was right."
    )
    versus_previous: PairedDifference | None = Field(
        None, description="pass@1 minus the previous policy's, paired task by task on the held-out tasks."
    )
    failures: dict[str, int] = Field(
        default_factory=dict,
        description="Held-out tasks per kind of greedy outcome (tasks.evaluate.failures); empty when the "
        "entry was made without its tasks.",
    )

    @property
    def policy(self) -> str:
        return self.summary.policy

    def bucket(self, dimension: str, value: str) -> BucketScore | None:
        return next((b for b in self.buckets if b.dimension == dimension and b.value == value), None)


def round_entry(
    label: str,
    evaluation: ArtifactRef,
    selection: ArtifactRef | None = None,
    checkpoint: ArtifactRef | None = None,
    tasks: ArtifactRef | None = None,
) -> RoundEntry:
    """One policy's line of the report; with ``tasks`` (what it was scored on), why it was wrong too."""
    metrics = Path(checkpoint.uri) / "train_metrics.json" if checkpoint else None
    rows = read_rows(evaluation, EvalRow)
    failures = {}
    if tasks is not None:
        trajectories = {t.id: t for t in read_rows(evaluation, Trajectory, name="trajectories")}
        kinds = failure_kinds(rows, trajectories, {t.id: t for t in load_tasks(tasks)})
        failures = failure_counts(kinds)
    return RoundEntry(
        label=label,
        summary=load_summary(evaluation),
        evaluation_id=evaluation.id,
        buckets=load_buckets(evaluation),
        selection_id=selection.id if selection else None,
        kept=kept_rows(selection) if selection else None,
        filters=read_rows(selection, FilterCount, name="filters") if selection else [],
        checkpoint_id=checkpoint.id if checkpoint else None,
        training=json.loads(metrics.read_text()) if metrics and metrics.exists() else None,
        greedy_right=greedy_outcomes(rows),
        failures=failures,
    )


def kept_rows(selection: ArtifactRef) -> int:
    """What a selection kept, without the rows that only raise carried trajectories' copies."""
    return sum(row.reason != REBALANCED for row in read_rows(selection, Selection))


def _loss(entry: RoundEntry) -> str:
    t = entry.training
    if not t or t.get("first_loss") is None:
        return "-"
    return f"{t['first_loss']:.3f}->{t['last_loss']:.3f} ({t['steps']} steps, {t['examples']} ex)"


class RoundReport(BaseModel):
    rounds: list[RoundEntry]
    stages: list[dict]
    cache_hits: int
    computed: int
    seconds: float
    plot: str | None = Field(None, description="PNG of pass@1 per round and bucket, under the store root.")

    def bucket_names(self) -> list[str]:
        return sorted({b.value for r in self.rounds for b in r.buckets if b.dimension == "bucket"})

    def table(self) -> str:
        lines = [
            "round       policy                 pass@1 (95% CI)       pass@k    F1  tools/traj  invalid  format-ok"
        ]
        for r in self.rounds:
            s = r.summary
            ci = f"[{s.ci_low:.0%}, {s.ci_high:.0%}]"
            lines.append(
                f"{r.label:11s} {s.policy[:22]:22s} {s.pass_at_1:6.1%} {ci:13s} {s.pass_at_k:7.1%} {s.f1:5.2f}"
                f" {s.tool_calls:10.2f} {s.invalid_action_rate:8.1%} {s.format_valid:9.1%}"
            )
        lines += self.paired_lines()
        lines += self.user_question_lines()
        lines += ["", "pass@1 by bucket"]
        names = self.bucket_names() + ["easy", "hard"]
        lines.append(f"{'round':11s} " + " ".join(f"{n:>9s}" for n in names))
        for r in self.rounds:
            cells = []
            for n in names:
                b = r.bucket("difficulty" if n in ("easy", "hard") else "bucket", n)
                cells.append(f"{b.pass_at_1:5.0%}/{b.tasks:<3d}" if b else f"{'-':>9s}")
            lines.append(f"{r.label:11s} " + " ".join(cells))
        lines += self.failure_lines()
        trained = [r for r in self.rounds if r.training or r.filters]
        if trained:
            lines += ["", "kept and trained"]
            for r in trained:
                removed = ", ".join(f"{f.filter} -{f.removed}" for f in r.filters if f.removed)
                lines.append(f"{r.label:11s} kept {r.kept or 0:4d}  loss {_loss(r)}  {removed}")
        return "\n".join(lines)

    def paired_lines(self, markdown: bool = False) -> list[str]:
        """Each policy against the one before it, task by task: whether a round's gain is noise."""
        pairs = [(before.label, r) for before, r in zip(self.rounds, self.rounds[1:], strict=False)]
        pairs = [(before, r.label, r.versus_previous) for before, r in pairs if r.versus_previous]
        if not pairs:
            return []
        cells = [
            (
                f"{before} → {label}",
                f"{100 * d.difference:+.1f}",
                f"[{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}]",
                f"{d.mcnemar_p:.3g}",
                f"{d.wrong_to_right} / {d.right_to_wrong}",
            )
            for before, label, d in pairs
        ]
        if markdown:
            return [
                "## Against the previous policy (paired on the held-out tasks)",
                "| | points | 95% paired bootstrap | exact McNemar p | wrong→right / right→wrong |",
                "|---|---|---|---|---|",
                *(f"| {' | '.join(c)} |" for c in cells),
                "",
            ]
        head = f"{'against the previous policy':30s} {'points':>6s}  {'95% paired CI':16s} {'McNemar p':>9s}  gained / lost"
        return ["", head, *(f"{a:30s} {b:>6s}  {c:16s} {d:>9s}  {e}" for a, b, c, d, e in cells)]

    def failure_lines(self, markdown: bool = False) -> list[str]:
        """How each policy's greedy answers went on the held-out tasks: which mistakes a round removed."""
        scored = [r for r in self.rounds if r.failures]
        if not scored:
            return []
        kinds = [k for k in FAILURE_KINDS if any(r.failures.get(k) for r in scored)]
        if markdown:
            return [
                "## How the held-out answers went (tasks per kind)",
                "| | " + " | ".join(kinds) + " |",
                "|---|" + "---|" * len(kinds),
                *(
                    f"| {r.label} | " + " | ".join(str(r.failures.get(k, 0)) for k in kinds) + " |"
                    for r in scored
                ),
                "",
            ]
        head = f"{'round':11s} " + " ".join(f"{k:>13s}" for k in kinds)
        rows = [f"{r.label:11s} " + " ".join(f"{r.failures.get(k, 0):13d}" for k in kinds) for r in scored]
        return ["", "how the held-out answers went (tasks per kind)", head, *rows]

    def user_question_lines(self, markdown: bool = False) -> list[str]:
        """Each policy's scores on the user's question set, a row per round; none without a set."""
        asked = [(r.label, r.user_questions) for r in self.rounds if r.user_questions is not None]
        if not asked:
            return []
        if markdown:
            rows = [
                f"| {label} | {q.pass_at_1:.1%} | {q.pass_at_k:.1%} | {q.f1:.2f} | {q.tool_calls:.2f} | {q.tasks} |"
                for label, q in asked
            ]
            head = [
                "## User questions",
                "| | pass@1 | pass@k | F1 | tool calls | questions |",
                "|---|---|---|---|---|---|",
            ]
            return [*head, *rows, ""]
        rows = [
            f"{label:11s} {q.pass_at_1:6.1%} {q.pass_at_k:7.1%} {q.f1:5.2f} {q.tool_calls:11.2f} {q.tasks:10d}"
            for label, q in asked
        ]
        return ["", "user questions", "round       pass@1  pass@k    F1  tools/traj  questions", *rows]

    def stage_lines(self) -> str:
        return "\n".join(
            f"  {'cached ' if e['reused'] else 'ran    '} {e['stage']:26s} {e['artifact_id']}  {e['rows']:>6} rows  {e['seconds']:7.1f}s"
            for e in self.stages
        )

    def markdown(self) -> str:
        rows = [
            f"| {r.label} | `{r.policy}` | {r.summary.pass_at_1:.1%} [{r.summary.ci_low:.1%}, {r.summary.ci_high:.1%}] "
            f"| {r.summary.pass_at_k:.1%} | {r.summary.f1:.2f} | {r.summary.tool_calls:.2f} "
            f"| {r.summary.invalid_action_rate:.1%} | {r.summary.format_valid:.1%} |"
            for r in self.rounds
        ]
        names = self.bucket_names() + ["easy", "hard"]
        by_bucket = []
        for r in self.rounds:
            cells = []
            for n in names:
                b = r.bucket("difficulty" if n in ("easy", "hard") else "bucket", n)
                cells.append(f"{b.pass_at_1:.0%} (n={b.tasks})" if b else "-")
            by_bucket.append(f"| {r.label} | " + " | ".join(cells) + " |")
        kept = [
            f"| {r.label} | {r.kept or 0} | "
            + ", ".join(f"{f.filter}: {f.removed}" for f in r.filters if f.removed)
            + f" | {_loss(r)} |"
            for r in self.rounds
            if r.training or r.filters
        ]
        stages = [
            f"| {e['stage']} | `{e['artifact_id']}` | {'cached' if e['reused'] else 'ran'} | {e['rows']} | {e['seconds']:.1f} |"
            for e in self.stages
        ]
        return "\n".join(
            [
                "# Trailforge round report",
                f"{self.computed} stages ran, {self.cache_hits} were cache hits, {self.seconds:.0f}s in all.",
                "",
                "| | policy | pass@1 [95% CI] | pass@k | F1 | tool calls | invalid actions | format valid |",
                "|---|---|---|---|---|---|---|---|",
                *rows,
                "",
                *self.paired_lines(markdown=True),
                *self.user_question_lines(markdown=True),
                "## pass@1 by bucket",
                "| | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
                *by_bucket,
                "",
                *self.failure_lines(markdown=True),
                "## Kept and trained",
                "| | kept | removed by filter | training loss (first->last) |",
                "|---|---|---|---|",
                *kept,
                "",
                "| stage | artifact | status | rows | seconds |",
                "|---|---|---|---|---|",
                *stages,
            ]
        )


def build_report(
    entries: list[RoundEntry], events: list[StageEvent], seconds: float, plot: str | None = None
) -> RoundReport:
    for previous, entry in zip(entries, entries[1:], strict=False):
        if previous.greedy_right and entry.greedy_right:
            entry.versus_previous = paired_outcomes(previous.greedy_right, entry.greedy_right)
    stages = [vars(e) for e in events]
    hits = sum(e.reused for e in events)
    return RoundReport(
        rounds=entries,
        stages=stages,
        cache_hits=hits,
        computed=len(events) - hits,
        seconds=seconds,
        plot=plot,
    )
