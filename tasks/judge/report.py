"""The judge reliability report of an annotations artifact, as text (CLI) and a Prefect artifact."""

from __future__ import annotations

from storage import ArtifactRef
from tasks.judge.annotate import load_reliability
from tasks.judge.reliability import format_report


def reliability_text(ref: ArtifactRef) -> str:
    return format_report(*load_reliability(ref))


def publish_reliability(ref: ArtifactRef) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        f"# Judge reliability of `{ref.id}`\n\n```\n{reliability_text(ref)}\n```",
        key="judge-reliability",
        description="Agreement between judges, AUROC against correctness, parse failures, leaks",
    )
