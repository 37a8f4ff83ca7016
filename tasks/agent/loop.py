"""The batched ReAct loop: every active trajectory advances together, one generation per turn.

The loop is written against a small ``Policy`` protocol (render messages, generate a batch), so
the transformers backend, a served model or a scripted test policy all drive the same code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from storage.schemas import Failure, Step, Task, Trajectory
from tasks.agent.environment import ToolConfig, execute_turns
from tasks.agent.protocol import (
    INVALID_ACTION_FEEDBACK,
    STOP_STRINGS,
    assistant_message,
    initial_messages,
    parse_turn,
    policy_template_digest,
    protocol_digest,
)
from tasks.llm.engines import check_model_spec
from tasks.llm.hf import Generation
from tasks.search.tools import TOOLS_SCHEMA, SearchTool

if TYPE_CHECKING:
    from tasks.judge.critic import StepCritic


class Policy(Protocol):
    def render(self, messages: list[dict]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self, prompts: list[str], *, max_new_tokens: int, temperature: float, seed: int, stop: tuple[str, ...]
    ) -> list[Generation]: ...


class RefineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["plain", "rate-and-refine", "cut-and-regenerate", "critique-and-refine"] = Field(
        "plain",
        description="plain: K samples as generated. rate-and-refine: a critic rates each proposed step "
        "before it runs and a low one is regenerated with the critique. cut-and-regenerate: a finished "
        "trajectory is cut at its first flawed step and the rest generated again. critique-and-refine "
        "(Reagent-C): a reward model critiques each finished attempt and the policy answers again.",
    )
    threshold: int = Field(3, ge=1, le=5, description="A step rated below this (1-5) is refined or cut at.")
    max_refines: int = Field(2, ge=0, le=10, description="Rate-and-refine: regenerations of one step (M).")
    max_revisions: int = Field(
        1, ge=0, le=10, description="Cut-and-regenerate: revisions per trajectory (N)."
    )
    critic: str = Field(
        "reference",
        description="Who rates steps and picks cut points: reference (gold-aware, no model), or a judge "
        "model with the prompts in tasks/judge/prompts.py: hf:PATH, vllm:PATH or openai:MODEL@URL.",
    )

    @field_validator("critic")
    @classmethod
    def _known_critic(cls, spec: str) -> str:
        return spec if spec == "reference" else check_model_spec(spec)


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(
        5,
        ge=1,
        le=100,
        description="Turns before an unanswered trajectory is cut off. The default mix's longest gold "
        "path (three searches, a calculation, the answer) takes 5; tasks that need more are counted as "
        "out of reach in evaluations.",
    )
    max_new_tokens: int = Field(
        128,
        ge=8,
        le=8192,
        description="Tokens generated per turn at most. Gold-path turns take a median 37 and a 95th "
        "percentile 59 of SmolLM2's tokens; a turn cut before its closing tag is an invalid action, and "
        "generation stops at the tag, so a roomy cap costs time only where a policy rambles.",
    )
    max_prompt_tokens: int = Field(
        3072, ge=256, le=1_000_000, description="Context budget; a longer prompt ends the trajectory."
    )
    engine: Literal["hf", "vllm"] = Field(
        "hf", description="What generates for a local model: hf (transformers, any machine) or vllm (GPU)."
    )
    tools: ToolConfig = Field(default_factory=ToolConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)

    def for_id(self) -> AgentConfig:
        """In plain mode no critic runs, so its settings cannot change a trajectory."""
        if self.refine.mode == "plain":
            return self.model_copy(update={"refine": RefineConfig()})
        return self


REFINE_FEEDBACK = "A reviewer rated that step {rating}/5: {critique} Write a better step."


@dataclass
class _Rollout:
    task: Task
    sample_index: int
    messages: list[dict]
    steps: list[Step] = field(default_factory=list)
    # len(messages) before each step's assistant message: where a cut at that step truncates
    marks: list[int] = field(default_factory=list)
    answer: str | None = None
    done: bool = False
    generated_tokens: int = 0
    revision: int = 0
    parent: _Rollout | None = None
    cut_at: int | None = None
    first_turn: int = 0  # steps inherited from an earlier attempt; the turn limit counts from here
    error: str | None = None  # set when a backend or the retriever gave up on this rollout

    @property
    def item_id(self) -> str:
        """The failure key of this rollout's current step: task, sample, revision and step."""
        return f"{self.task.id}#s{self.sample_index}#r{self.revision}#t{len(self.steps)}"

    def cut(self, step: int, revision: int) -> _Rollout:
        """A copy of the first ``step`` steps, to be continued by the policy."""
        steps = [s.model_copy() for s in self.steps[:step]]
        return _Rollout(
            task=self.task,
            sample_index=self.sample_index,
            messages=[dict(m) for m in self.messages[: self.marks[step]]],
            steps=steps,
            marks=self.marks[:step],
            generated_tokens=sum(s.tokens for s in steps),
            revision=revision,
            parent=self,
            cut_at=step,
        )


def trajectory_id(
    policy: str, task_id: str, sample_index: int, temperature: float, seed: int, revision: int = 0
) -> str:
    key = f"{policy}|{task_id}|{sample_index}|{temperature}|{seed}" + (f"|rev{revision}" if revision else "")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def run_agent(
    policy: Policy,
    tool: SearchTool,
    tasks: list[Task],
    *,
    config: AgentConfig,
    samples_per_task: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    policy_name: str = "policy",
    stage: str = "collect",
    progress: str | None = None,
    critic: StepCritic | None = None,
    first_sample_index: int = 0,
) -> tuple[list[Trajectory], list[Failure]]:
    """Roll out every task ``samples_per_task`` times; the refine mode may add critic-steered work.

    With cut-and-regenerate the result holds the first rollouts and every revision (linked by
    ``parent_id``); with rate-and-refine each step keeps its rejected attempts. Samples are numbered
    from ``first_sample_index``, so several calls for one task set never reuse a sample's key.
    A rollout that a backend or the retriever gives up on ends with ``error`` set and a failure
    recorded; every other rollout goes on.
    """
    mode = config.refine.mode
    if mode != "plain" and critic is None:
        critic = make_critic(config.refine.critic, tool, config.tools.top_k, stage)
    loop = _Loop(
        policy, tool, config, temperature, seed, stage, critic if mode == "rate-and-refine" else None
    )
    rollouts = [
        _Rollout(t, first_sample_index + i, initial_messages(t.question))
        for t in tasks
        for i in range(samples_per_task)
    ]
    loop.advance(rollouts, progress)
    finished = list(rollouts)
    if mode == "cut-and-regenerate":
        current = rollouts
        for revision in range(1, config.refine.max_revisions + 1):
            cuts = [
                (r, critic.cut_point(r.item_id, r.task, r.steps, config.refine.threshold)) for r in current
            ]
            current = [r.cut(step, revision) for r, step in cuts if step is not None]
            if not current:
                break
            loop.advance(current, progress and f"{progress} revision {revision}")
            finished += current
    elif mode == "critique-and-refine":
        from tasks.agent.critique_refine import second_attempts

        finished += second_attempts(loop, rollouts, critic, progress)
    failures = loop.failures + list(getattr(critic, "failures", []))
    digests = {"protocol_digest": protocol_digest(), "template_digest": policy_template_digest(policy)}
    return [_trajectory(r, policy_name, temperature, seed, digests) for r in finished], failures


def make_critic(spec: str, tool: SearchTool, top_k: int, stage: str) -> StepCritic:
    if spec == "reference":
        from tasks.judge.critic import ReferenceCritic

        return ReferenceCritic(tool, top_k)
    from tasks.judge.llm_critic import critic_from_spec

    return critic_from_spec(spec, stage=stage)


def _trajectory(r: _Rollout, policy_name: str, temperature: float, seed: int, digests: dict) -> Trajectory:
    def tid(rollout: _Rollout) -> str:
        return trajectory_id(
            policy_name, rollout.task.id, rollout.sample_index, temperature, seed, rollout.revision
        )

    return Trajectory(
        id=tid(r),
        task_id=r.task.id,
        policy=policy_name,
        sample_index=r.sample_index,
        temperature=temperature,
        seed=seed,
        messages_json=json.dumps(r.messages),
        tools_json=json.dumps(TOOLS_SCHEMA),
        steps=r.steps,
        final_answer=r.answer,
        finished=r.answer is not None,
        generated_tokens=r.generated_tokens,
        revision=r.revision,
        parent_id=tid(r.parent) if r.parent else None,
        cut_step=r.cut_at,
        error=r.error,
        **digests,
    )


class _Loop:
    """The turn loop shared by first rollouts and regenerated suffixes."""

    def __init__(
        self,
        policy: Policy,
        tool: SearchTool,
        config: AgentConfig,
        temperature: float,
        seed: int,
        stage: str,
        critic: StepCritic | None,
    ) -> None:
        self.policy, self.tool, self.config = policy, tool, config
        self.temperature, self.seed, self.stage, self.critic = temperature, seed, stage, critic
        self.failures: list[Failure] = []

    def _generate(self, prompts: list[str], call: int) -> list[Generation]:
        return self.policy.generate(
            prompts,
            max_new_tokens=self.config.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed * 1009 + call,
            stop=STOP_STRINGS,
        )

    def advance(self, rollouts: list[_Rollout], progress: str | None) -> None:
        """Run turns until every rollout answered, hit the turn limit or spent its context budget."""
        max_turns = self.config.max_turns
        bar = tqdm(total=max_turns, desc=progress, unit="turn", leave=False, disable=progress is None)
        ui_progress = PrefectProgress(progress) if progress else None
        for _ in range(max_turns):
            active = []
            prompts = []
            for rollout in rollouts:
                if rollout.done or len(rollout.steps) - rollout.first_turn >= max_turns:
                    continue
                prompt = self.policy.render(rollout.messages)
                if self.policy.count_tokens(prompt) > self.config.max_prompt_tokens:
                    rollout.done = True  # context budget spent: the trajectory ends unanswered
                    continue
                active.append(rollout)
                prompts.append(prompt)
            if not active:
                break
            # The seed depends on the step and revision, so a regenerated suffix is a fresh sample.
            call = len(active[0].steps) + 7919 * active[0].revision
            generations = self._generate(prompts, call)
            active, generations = self._drop_failed(active, generations)
            turns = [parse_turn(g.text) for g in generations]
            judgements: list = [None] * len(active)
            attempts: list[list[dict]] = [[] for _ in active]
            if self.critic is not None:
                judgements = self._rate_and_refine(active, generations, turns, attempts, call)
            observations = execute_turns(self.tool, turns, self.config.tools)
            for i, (rollout, generation, turn, observation) in enumerate(
                zip(active, generations, turns, observations, strict=True)
            ):
                if observation is not None and observation.fatal:
                    # the retriever gave up on this query: this rollout ends, the rest go on
                    self._fail(rollout, observation.error or "ToolError", observation.text, generation.text)
                    continue
                self._record(rollout, generation, turn, observation, judgements[i], attempts[i], len(active))
            bar.update(1)
            if ui_progress:
                ui_progress.update(bar.n / max_turns)
        bar.close()
        if ui_progress:
            ui_progress.update(1.0)

    def _drop_failed(self, active: list[_Rollout], generations: list[Generation]):
        kept = []
        for rollout, generation in zip(active, generations, strict=True):
            if generation.error is None:
                kept.append((rollout, generation))
                continue
            # The backend gave up on this prompt: the trajectory ends, and the failure is kept.
            self._fail(rollout, "GenerationError", generation.error, generation.text)
        return [r for r, _ in kept], [g for _, g in kept]

    def _fail(self, rollout: _Rollout, error_class: str, message: str, raw_output: str) -> None:
        self.failures.append(
            Failure(
                stage=self.stage,
                item_id=rollout.item_id,
                error_class=error_class,
                message=message,
                raw_output=raw_output,
            )
        )
        rollout.error = f"{error_class}: {message}"
        rollout.done = True

    def _rate_and_refine(self, active, generations, turns, attempts, call):
        """Rate each proposed step; regenerate those below the threshold with the critique, M times."""
        refine = self.config.refine
        judgements = self.critic.rate(
            [(r.item_id, r.task, r.steps, t) for r, t in zip(active, turns, strict=True)]
        )
        pending = [i for i, j in enumerate(judgements) if j.below(refine.threshold)]
        for attempt in range(refine.max_refines):
            if not pending:
                break
            prompts = [
                self.policy.render(
                    [
                        *active[i].messages,
                        {"role": "assistant", "content": generations[i].text},
                        {
                            "role": "user",
                            "content": REFINE_FEEDBACK.format(
                                rating=judgements[i].rating, critique=judgements[i].critique
                            ),
                        },
                    ]
                )
                for i in pending
            ]
            retries = self._generate(prompts, call + 104729 * (attempt + 1))
            still = []
            for i, retry in zip(pending, retries, strict=True):
                if retry.error is not None:
                    continue  # keep the last attempt; the backend gave up on the retry
                attempts[i].append(
                    {
                        "raw": generations[i].text,
                        "rating": judgements[i].rating,
                        "critique": judgements[i].critique,
                    }
                )
                generations[i] = Generation(
                    text=retry.text,
                    tokens=generations[i].tokens + retry.tokens,
                    latency_s=generations[i].latency_s + retry.latency_s,
                )
                turns[i] = parse_turn(retry.text)
                still.append(i)
            for i, judgement in zip(
                still,
                self.critic.rate(
                    [(active[i].item_id, active[i].task, active[i].steps, turns[i]) for i in still]
                ),
                strict=True,
            ):
                judgements[i] = judgement
            pending = [i for i in still if judgements[i].below(refine.threshold)]
        return judgements

    def _record(self, rollout, generation, turn, observation, judgement, attempts, batch_size) -> None:
        rollout.generated_tokens += generation.tokens
        rollout.marks.append(len(rollout.messages))
        rollout.messages.append(assistant_message(turn, generation.text))
        step = Step(
            index=len(rollout.steps),
            thought=turn.thought,
            action=turn.action,
            argument=turn.argument,
            raw=generation.text,
            tokens=generation.tokens,
            latency_s=generation.latency_s / max(batch_size, 1),
            critic_rating=judgement.rating if judgement is not None else None,
            rejected_json=json.dumps(attempts),
        )
        if turn.action == "answer":
            rollout.answer = turn.argument
            rollout.done = True
        elif turn.action == "invalid":
            step.observation = INVALID_ACTION_FEEDBACK
            rollout.messages.append({"role": "user", "content": INVALID_ACTION_FEEDBACK})
        else:
            step.observation = observation.text
            step.retrieved_doc_ids = observation.doc_ids
            rollout.messages.append({"role": "tool", "name": turn.action, "content": observation.text})
            step.tool_error = observation.error
            if observation.error:
                self.failures.append(
                    Failure(
                        stage=self.stage,
                        item_id=rollout.item_id,
                        error_class=observation.error,
                        message=observation.text,
                        raw_output=generation.text,
                    )
                )
        rollout.steps.append(step)


class PrefectProgress:
    """A progress artifact in the Prefect UI while a stage runs inside a Prefect task."""

    def __init__(self, description: str) -> None:
        self.artifact_id = None
        try:
            if TaskRunContext.get() is not None:
                self.artifact_id = create_progress_artifact(0.0, description=description)
        except Exception as exc:  # the UI is a view: losing it must not stop collection
            logging.getLogger(__name__).warning("no progress artifact for %s: %s", description, exc)

    def update(self, fraction: float) -> None:
        if self.artifact_id is None:
            return
        try:
            update_progress_artifact(self.artifact_id, round(100 * fraction, 1))
        except Exception as exc:
            logging.getLogger(__name__).warning("progress artifact update failed: %s", exc)
            self.artifact_id = None
