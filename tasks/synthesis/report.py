"""The synthesis report: tasks per bucket against the target, rejections per verifier, examples.

Shown by ``trailforge tasks TASKS_ID`` and published as a Prefect table artifact by the flows.
"""

from __future__ import annotations

from collections import Counter

from storage import ArtifactRef
from storage.schemas import RejectedTask, SynthesisBucket
from storage.store import read_rows
from tasks.synthesis.evidence import load_tasks
from tasks.synthesis.verify import VERIFIERS


def report_table(ref: ArtifactRef) -> list[dict]:
    """One row per bucket: target and achieved share, counts, candidates, rejections per verifier."""
    rejected = Counter((r.bucket, r.verifier) for r in read_rows(ref, RejectedTask, "rejected"))
    rows = []
    for b in read_rows(ref, SynthesisBucket, "report"):
        row = b.model_dump()
        row.update({f"rejected_{v}": rejected[(b.bucket, v)] for v in VERIFIERS})
        rows.append(row)
    return rows


def format_report(ref: ArtifactRef, examples: int = 1) -> str:
    rows = report_table(ref)
    tasks = load_tasks(ref)
    rejected = read_rows(ref, RejectedTask, "rejected")
    lines = [
        f"{len(tasks)} tasks ({sum(t.split == 'train' for t in tasks)} train, "
        f"{sum(t.split == 'eval' for t in tasks)} held out); buckets are h<hops>-k<treewidth>-m<msd>",
        "",
        f"{'bucket':10s} {'hard':>4s} {'target':>7s} {'achieved':>8s} {'train':>6s} {'eval':>5s} "
        f"{'candidates':>10s}  rejected",
    ]
    for row in rows:
        rejections = ", ".join(f"{v} {row[f'rejected_{v}']}" for v in VERIFIERS if row[f"rejected_{v}"])
        lines.append(
            f"{row['bucket']:10s} {'yes' if row['hard'] else '':>4s} {row['target_share']:>7.1%} "
            f"{row['achieved_share']:>8.1%} {row['train']:>6d} {row['eval']:>5d} {row['candidates']:>10d}  "
            f"{rejections or '-'}"
        )
    by_verifier = Counter(r.verifier for r in rejected)
    lines += [
        "",
        "Rejected per verifier: " + (", ".join(f"{v} {by_verifier[v]}" for v in VERIFIERS) or "none"),
    ]
    lines += ["", "Examples:"]
    for row in rows:
        for task in [t for t in tasks if t.bucket == row["bucket"]][:examples]:
            extra = f"  [calculate {task.calculation}]" if task.calculation else ""
            lines.append(f"  {task.bucket} {task.template}: {task.question} -> {task.answer}{extra}")
    for verifier in VERIFIERS:
        for r in [r for r in rejected if r.verifier == verifier][:examples]:
            lines.append(f"  rejected by {verifier} ({r.bucket}): {r.question} -> {r.answer}: {r.reason}")
    return "\n".join(lines)


def publish_report(ref: ArtifactRef) -> None:
    """The report as a Prefect table artifact (inside a flow run)."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        report_table(ref),
        key="synthesis-report",
        description=f"Tasks per difficulty bucket, target vs achieved, rejections per verifier ({ref.id})",
    )
