"""The round report: held-out scores per round, and what each stage did (ran or reused)."""

from __future__ import annotations

from pydantic import BaseModel

from flows.stages import StageEvent
from storage.schemas import EvalSummary


class RoundReport(BaseModel):
    rounds: list[EvalSummary]
    stages: list[dict]
    cache_hits: int
    computed: int
    seconds: float

    def table(self) -> str:
        lines = ["round    policy                 pass@1  pass@k    F1  tools/traj  format-ok"]
        for i, s in enumerate(self.rounds):
            name = "base" if i == 0 else f"round {i}"
            lines.append(
                f"{name:8s} {s.policy[:22]:22s} {s.pass_at_1:6.1%} {s.pass_at_k:7.1%} {s.f1:5.2f} {s.tool_calls:10.2f} {s.format_valid:9.1%}"
            )
        return "\n".join(lines)

    def stage_lines(self) -> str:
        return "\n".join(
            f"  {'cached ' if e['reused'] else 'ran    '} {e['stage']:22s} {e['artifact_id']}  {e['rows']:>6} rows  {e['seconds']:7.1f}s"
            for e in self.stages
        )

    def markdown(self) -> str:
        rows = [
            f"| {'base' if i == 0 else f'round {i}'} | `{s.policy}` | {s.pass_at_1:.1%} | {s.pass_at_k:.1%} | {s.f1:.2f} | {s.tool_calls:.2f} | {s.format_valid:.1%} |"
            for i, s in enumerate(self.rounds)
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
                "| | policy | pass@1 | pass@k | F1 | tool calls | format valid |",
                "|---|---|---|---|---|---|---|",
                *rows,
                "",
                "| stage | artifact | status | rows | seconds |",
                "|---|---|---|---|---|",
                *stages,
            ]
        )


def build_report(summaries: list[EvalSummary], events: list[StageEvent], seconds: float) -> RoundReport:
    stages = [vars(e) for e in events]
    hits = sum(e.reused for e in events)
    return RoundReport(
        rounds=summaries, stages=stages, cache_hits=hits, computed=len(events) - hits, seconds=seconds
    )
