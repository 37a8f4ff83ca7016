"""Asking a judge model: one batched call per round, a bounded number of re-asks, every reply kept.

Every conversation of a round goes to the backend in one ``generate`` call (``hf:``, ``vllm:`` and
``openai:`` generators all batch). A reply the strict parser rejects is asked again, in the same
conversation, with the reason it could not be read; after ``max_reasks`` re-asks it is a failure
carrying every raw reply. A backend that gave up is a failure at once (it already retried).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage.schemas import Failure, JudgeFamily, Judgement, Task, Trajectory
from tasks.judge.parsing import JudgeOutputError

REASK = (
    "Your reply could not be read: {reason}. Judge again and reply in exactly the format asked for, "
    "ending with the final block."
)


@dataclass
class Asked:
    value: Any = None  # the parsed verdict; None when every attempt failed
    replies: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class JudgeModel:
    """A generator used as a judge: greedy, batched, with strict parsing and bounded re-asks."""

    def __init__(self, generator, name: str, max_new_tokens: int = 384, max_reasks: int = 2) -> None:
        self.generator = generator
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.max_reasks = max_reasks

    def ask(self, conversations: list[list[dict]], parsers: list[Callable[[str], Any]]) -> list[Asked]:
        results = [Asked() for _ in conversations]
        conversations = [list(c) for c in conversations]
        pending = list(range(len(conversations)))
        for attempt in range(self.max_reasks + 1):
            if not pending:
                break
            generations = self.generator.generate(
                [self.generator.render(conversations[i]) for i in pending],
                max_new_tokens=self.max_new_tokens,
                temperature=0.0,
                seed=attempt,
                stop=(),
            )
            again = []
            for i, generation in zip(pending, generations, strict=True):
                result = results[i]
                result.replies.append(generation.text)
                if generation.error is not None:
                    result.error = f"the judge model gave no reply ({generation.error})"
                    continue
                try:
                    result.value, result.error = parsers[i](generation.text), None
                except JudgeOutputError as error:
                    result.error = error.reason
                    conversations[i] += [
                        {"role": "assistant", "content": generation.text},
                        {"role": "user", "content": REASK.format(reason=error.reason)},
                    ]
                    again.append(i)
            pending = again
        return results


def item_id(trajectory: Trajectory, family: str, step: int | str = "all", judge: str = "model") -> str:
    """A failure's key: task, sample, revision, trajectory, step and judge, unique per item."""
    t = trajectory
    return f"{t.task_id}#s{t.sample_index}#r{t.revision}#{t.id[:8]}#t{step}#{family}-{judge}"


def failure(trajectory: Trajectory, family: str, asked: Asked, step: int | str = "all") -> Failure:
    separator = "\n--- re-asked ---\n"
    return Failure(
        stage="annotate-shard",
        item_id=item_id(trajectory, family, step),
        error_class="JudgeOutputError",
        message=f"{family} judge: {asked.error}",
        raw_output=separator.join(asked.replies),
        attempts=len(asked.replies),
    )


def judgements(
    model: JudgeModel,
    family: JudgeFamily,
    items: list[tuple[Trajectory, Task]],
    results: list[Asked],
    verdict: Callable[[Task, Any], dict[str, Any]],
) -> tuple[dict[str, Judgement], list[Failure]]:
    """Each item's reply as a judgement, or as a failure holding every raw reply: never a silent gap.

    ``verdict`` turns a parsed reply into the family's fields (its score and whatever else it keeps).
    """
    judged, failures = {}, []
    for (t, task), asked in zip(items, results, strict=True):
        if not asked.ok:
            failures.append(failure(t, family, asked))
            continue
        judged[t.id] = Judgement(
            trajectory_id=t.id,
            task_id=task.id,
            judge=model.name,
            family=family,
            raw=asked.replies[-1],
            attempts=len(asked.replies),
            **verdict(task, asked.value),
        )
    return judged, failures
