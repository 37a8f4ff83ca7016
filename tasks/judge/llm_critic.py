"""A critic that is a language model: any backend (``hf``, ``vllm``, ``openai``) with the judge prompts.

It needs no gold path, so it works on tasks from any corpus. Every proposal of a turn is judged in
one batched call. A reply that does not follow the format is recorded as a failure with its raw
text; the step it was about goes ahead unrefined (rating ``None``), and a trajectory it was about
is not cut: an unreadable judge never silently rewrites the data.
"""

from __future__ import annotations

from storage.schemas import Failure, Step, Task
from tasks.judge.asking import JudgeModel
from tasks.judge.critic import Attempt, Critique, Proposal, StepJudgement
from tasks.judge.parsing import parse_process
from tasks.judge.prompts import JudgeOutputError, cut_messages, parse_cut, parse_rating, rate_messages
from tasks.judge.reward_model import rrm_messages
from tasks.llm.hf import Generation

JUDGE_MAX_NEW_TOKENS = 64
CRITIQUE_MAX_NEW_TOKENS = 384


class LLMCritic:
    def __init__(self, generator, stage: str = "critic", max_new_tokens: int = JUDGE_MAX_NEW_TOKENS) -> None:
        self.generator = generator
        self.stage = stage
        self.max_new_tokens = max_new_tokens
        self.failures: list[Failure] = []

    def _ask(self, conversations: list[list[dict]]) -> list[Generation]:
        prompts = [self.generator.render(messages) for messages in conversations]
        return self.generator.generate(
            prompts, max_new_tokens=self.max_new_tokens, temperature=0.0, seed=0, stop=()
        )

    def _failed(self, item_id: str, error: JudgeOutputError) -> None:
        self.failures.append(
            Failure(
                stage=self.stage,
                item_id=item_id,
                error_class="JudgeOutputError",
                message=error.reason,
                raw_output=error.raw,
            )
        )

    def rate(self, proposals: list[Proposal]) -> list[StepJudgement]:
        replies = self._ask([rate_messages(task, steps, turn) for _, task, steps, turn in proposals])
        judgements = []
        for (key, *_), reply in zip(proposals, replies, strict=True):
            try:
                judgements.append(StepJudgement(*parse_rating(_text(reply))))
            except JudgeOutputError as error:
                self._failed(f"{key}#rate", error)
                judgements.append(StepJudgement(None, ""))
        return judgements

    def cut_point(self, key: str, task: Task, steps: list[Step], threshold: int) -> int | None:
        """The judge's first flawed step (``threshold`` is the reference critic's; unused here)."""
        if not steps:
            return None
        (reply,) = self._ask([cut_messages(task, steps)])
        try:
            return parse_cut(_text(reply), len(steps))
        except JudgeOutputError as error:
            self._failed(f"{key}#cut", error)
            return None

    def critique(self, attempts: list[Attempt]) -> list[Critique]:
        """Agent-RRM's three blocks on each finished attempt, batched; one re-ask on a malformed reply."""
        model = JudgeModel(self.generator, "critic", max(self.max_new_tokens, CRITIQUE_MAX_NEW_TOKENS), 1)
        results = model.ask(
            [rrm_messages(task.question, steps) for _, task, steps, _ in attempts],
            [parse_process] * len(attempts),
        )
        critiques = []
        for (key, *_), asked in zip(attempts, results, strict=True):
            if asked.ok:
                critiques.append(Critique(asked.value.critique, asked.value.score))
                continue
            self.failures.append(
                Failure(
                    stage=self.stage,
                    item_id=f"{key}#critique",
                    error_class="JudgeOutputError",
                    message=asked.error or "",
                    raw_output="\n--- re-asked ---\n".join(asked.replies),
                    attempts=len(asked.replies),
                )
            )
            critiques.append(Critique(None, None))
        return critiques


def critic_from_spec(spec: str, stage: str = "critic") -> LLMCritic:
    """A judge model named by a model spec (see :mod:`tasks.llm.engines`)."""
    from tasks.llm.engines import generator_from_spec

    return LLMCritic(generator_from_spec(spec), stage)


def _text(generation: Generation) -> str:
    """The judge's reply; a served judge that gave up is a failure with the backend's reason."""
    if generation.error is not None:
        raise JudgeOutputError(f"the judge model gave no reply ({generation.error})", generation.text)
    return generation.text
