"""Critics that steer collection: rate a proposed step before it runs, or find where to cut.

Rate-and-refine (SRR-Judge) asks a critic for a 1-5 rating and a critique of each proposed step
before the tool runs; cut-and-regenerate (Search-R2) asks it for the first flawed step of a
finished trajectory. Any object with ``rate`` and ``cut_point`` can drive both modes.

``ReferenceCritic`` is the gold-aware critic for synthesised tasks: it previews a proposed search
through the real (cached) search tool and rates it on the reference judge's scale, and its critique
names the fact still missing. It needs no language model, so both modes run anywhere; because its
critiques come from the gold path, refined steps are teacher-guided, as SRR-Judge's refined
actions are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from storage.schemas import Hop, Step, Task
from tasks.judge.reference import critique, process_score, rate_steps
from tasks.rewards.outcome import exact_match, token_f1
from tasks.search.tools import SearchTool, split_page_argument
from tasks.synthesis.evidence import hop_query
from tasks.turns import ParsedTurn


@dataclass(frozen=True)
class StepJudgement:
    rating: int | None  # 1-5, SRR-Judge's scale; None when the judge's reply could not be read
    critique: str

    def below(self, threshold: int) -> bool:
        """Whether the step should be refined; an unreadable judgement never triggers a refine."""
        return self.rating is not None and self.rating < threshold


@dataclass(frozen=True)
class Critique:
    """A reward model's verdict on a finished attempt (Agent-RRM): a critique for the agent, a score."""

    text: str | None  # None when the judge's reply could not be read
    score: float | None


# (item key, task, the attempt's steps, its final answer): what critique-and-refine asks about
Attempt = tuple[str, Task, list[Step], str | None]
# (item key, task, the steps so far, the proposed step): what rate-and-refine asks about; the key
# (task, sample, revision, step) names a failure of the judge, so two samples' failures never share one
Proposal = tuple[str, Task, list[Step], ParsedTurn]


class StepCritic(Protocol):
    def rate(self, proposals: list[Proposal]) -> list[StepJudgement]: ...

    def cut_point(self, key: str, task: Task, steps: list[Step], threshold: int) -> int | None: ...

    def critique(self, attempts: list[Attempt]) -> list[Critique]: ...


class ReferenceCritic:
    def __init__(self, tool: SearchTool, top_k: int) -> None:
        self.tool = tool
        self.top_k = top_k

    def rate(self, proposals: list[Proposal]) -> list[StepJudgement]:
        searches = [turn.argument for *_, turn in proposals if turn.action == "search"]
        previews = iter(self.tool.search(searches, k=self.top_k)) if searches else iter(())
        judgements = []
        for _, task, steps, turn in proposals:
            gold = set(task.evidence_doc_ids)
            seen = gold & {d for step in steps for d in step.retrieved_doc_ids}
            missing = next((hop for hop in task.hops if hop.doc_id not in seen), None)
            if turn.action == "search":
                found = gold & {hit.doc_id for hit in next(previews)}
                rating = 5 if found - seen else 3 if found else 2
            elif turn.action == "open":
                doc_id = split_page_argument(turn.argument)[0]
                if self.tool.document(doc_id) is None:
                    rating = 1
                else:
                    rating = 5 if doc_id in gold - seen else 3 if doc_id in gold else 2
            elif turn.action == "answer":
                answers = [task.answer, *task.aliases]
                rating = (
                    5 if exact_match(turn.argument, answers) else 3 if token_f1(turn.argument, answers) else 1
                )
            elif turn.action == "calculate":
                rating = 3
            else:
                rating = 1
            judgements.append(StepJudgement(rating, "" if rating == 5 else _critique(turn, missing)))
        return judgements

    def cut_point(self, key: str, task: Task, steps: list[Step], threshold: int) -> int | None:
        """The first step the reference judge rates below ``threshold``; None accepts the trajectory."""
        return next((i for i, rating in enumerate(rate_steps(steps, task)) if rating < threshold), None)

    def critique(self, attempts: list[Attempt]) -> list[Critique]:
        """The reference judge's process critique (never naming the answer) and process score."""
        return [
            Critique(critique(steps, task, answer), process_score(steps, task, answer))
            for _, task, steps, answer in attempts
        ]


def _critique(turn: ParsedTurn, missing: Hop | None) -> str:
    if turn.action == "invalid":
        opening = "That reply has no valid action."
    elif turn.action == "answer":
        opening = "That answer is not supported by the evidence found so far."
    else:
        opening = "That step does not reach new evidence."
    if missing is None:
        return f"{opening} The evidence is complete: give the answer with <answer>...</answer>."
    return (
        f"{opening} Still missing: {missing.subject_name}'s fact. Try <search>{hop_query(missing)}</search>."
    )
