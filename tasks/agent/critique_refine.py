"""Critique-and-refine collection (Reagent-C): a reward model critiques a finished attempt, the
policy reads the critique and answers again.

Every first attempt that ended without a backend or retriever failure is critiqued, all in one
batch (``critic.critique``: Agent-RRM's critique and score; the reference critic writes one from the
gold path that never names the answer). The second attempt continues the same conversation: the
first attempt, then the critique as a user message, then a fresh turn budget. Both attempts are
kept and linked as cut-and-regenerate's revisions are: the second is revision 1, ``parent_id`` the
first, ``cut_step`` the number of steps it carries over. A critique that names the gold answer is
never shown to the policy (that attempt gets no second one and a ``CritiqueLeaksAnswer`` failure);
an unreadable one is the critic's failure, recorded by the critic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.schemas import Failure
from tasks.agent.loop import _Loop, _Rollout
from tasks.judge.reference import leaks_answer

if TYPE_CHECKING:
    from tasks.judge.critic import StepCritic

CRITIQUE_FEEDBACK = (
    "A reviewer read your attempt and wrote: {critique}\n"
    "Answer the question again, taking the review into account."
)


def second_attempts(
    loop: _Loop, firsts: list[_Rollout], critic: StepCritic, progress: str | None
) -> list[_Rollout]:
    attempts = [r for r in firsts if r.error is None]
    critiques = critic.critique([(r.item_id, r.task, r.steps, r.answer) for r in attempts])
    seconds = []
    for first, critique in zip(attempts, critiques, strict=True):
        if critique.text is None:
            continue
        if leaks_answer(critique.text, first.task):
            loop.failures.append(
                Failure(
                    stage=loop.stage,
                    item_id=f"{first.item_id}#critique",
                    error_class="CritiqueLeaksAnswer",
                    message="the critique names the gold answer; it was not shown to the policy",
                    raw_output=critique.text,
                )
            )
            continue
        feedback = {"role": "user", "content": CRITIQUE_FEEDBACK.format(critique=critique.text)}
        seconds.append(
            _Rollout(
                task=first.task,
                sample_index=first.sample_index,
                messages=[*(dict(m) for m in first.messages), feedback],
                steps=[s.model_copy() for s in first.steps],
                marks=list(first.marks),
                generated_tokens=first.generated_tokens,
                revision=1,
                parent=first,
                cut_at=len(first.steps),
                first_turn=len(first.steps),
            )
        )
    if seconds:
        loop.advance(seconds, progress and f"{progress} second attempt")
    return seconds
