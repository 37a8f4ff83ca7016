"""Evaluation stage: a policy on held-out tasks; pass@1, pass@k, EM/F1, tool calls, format validity.

Evaluation is the policy alone: no critic and no refine mode (the reference critic knows the gold
path, so its help would leak the answer), and a rollout a backend or the retriever gave up on is a
wrong answer and a recorded failure, never a row left out of the score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage import ArtifactStore
from storage.schemas import EvalRow, EvalSummary, Failure, Task, Trajectory
from storage.store import read_rows, write_table
from tasks.agent.environment import tool_for
from tasks.agent.loop import AgentConfig, run_agent
from tasks.evaluate.buckets import BucketScore, bootstrap_interval, bucket_scores, first_samples
from tasks.evaluate.recall import mean_supporting_recall, supporting_recall
from tasks.llm.engines import load_engine, precision
from tasks.rewards.outcome import exact_match, token_f1
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.evidence import load_tasks, out_of_reach


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples_per_task: int = Field(
        1, ge=1, le=64, description="Samples per task (n); the first is greedy, the rest sampled."
    )
    pass_k: int | None = Field(
        None,
        ge=1,
        le=64,
        description="k of pass@k (default: samples_per_task). With k < n the unbiased estimator "
        "1 - C(n-c, k) / C(n, k) is used.",
    )
    temperature: float = Field(0.7, ge=0, le=5, description="Temperature of samples after the first.")
    seed: int = 0
    agent: AgentConfig = Field(default_factory=AgentConfig)

    @model_validator(mode="after")
    def _the_policy_alone(self) -> EvalConfig:
        if self.agent.refine.mode != "plain":
            raise ValueError(
                f"evaluation runs the policy alone: refine mode {self.agent.refine.mode!r} would let a "
                "critic (the reference critic knows the gold path) steer held-out rollouts; use 'plain'"
            )
        if self.pass_k is not None and self.pass_k > self.samples_per_task:
            raise ValueError(f"pass_k {self.pass_k} needs at least that many samples_per_task")
        return self

    @property
    def k(self) -> int:
        return self.pass_k or self.samples_per_task

    def load_policy(self, inputs: Inputs) -> tuple[object, str]:
        """The generator under evaluation and its name: the model input, run by ``agent.engine``.

        A served model's evaluation overrides this (:mod:`tasks.evaluate.served`).
        """
        model = inputs["model"]
        return load_engine(model.uri, self.agent.engine), model.id

    def for_id(self) -> EvalConfig:
        """One greedy sample uses no temperature; the refine settings are unused (plain only)."""
        update: dict = {"agent": self.agent.for_id()}
        if self.samples_per_task == 1:
            update["temperature"] = type(self).model_fields["temperature"].default
        return self.model_copy(update=update)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def score(trajectories: list[Trajectory], tasks: dict[str, Task]) -> list[EvalRow]:
    rows = []
    for t in trajectories:
        answers = [tasks[t.task_id].answer, *tasks[t.task_id].aliases]
        rows.append(
            EvalRow(
                task_id=t.task_id,
                trajectory_id=t.id,
                policy=t.policy,
                sample_index=t.sample_index,
                exact_match=exact_match(t.final_answer, answers),
                f1=token_f1(t.final_answer, answers),
                tool_calls=sum(s.action in ("search", "open", "calculate") for s in t.steps),
                valid_format=t.finished and all(s.action != "invalid" for s in t.steps),
                failed=t.error is not None,
                steps=len(t.steps),
                invalid_actions=sum(s.action == "invalid" for s in t.steps),
                supporting_recall=supporting_recall(t, tasks[t.task_id]),
            )
        )
    return rows


def summarize(rows: list[EvalRow], policy: str, samples_per_task: int, k: int | None = None) -> EvalSummary:
    k = k or samples_per_task
    by_task: dict[str, list[EvalRow]] = defaultdict(list)
    for r in rows:
        by_task[r.task_id].append(r)
    n = max(len(by_task), 1)
    first = list(first_samples(rows).values())
    ci_low, ci_high = bootstrap_interval([r.exact_match for r in first])
    return EvalSummary(
        policy=policy,
        tasks=len(by_task),
        samples_per_task=samples_per_task,
        k=k,
        pass_at_1=sum(r.exact_match for r in first) / n,
        pass_at_k=sum(
            pass_at_k(len(rs), sum(r.exact_match == 1.0 for r in rs), min(k, len(rs)))
            for rs in by_task.values()
        )
        / n,
        failed=sum(r.failed for r in rows),
        exact_match=sum(r.exact_match for r in rows) / max(len(rows), 1),
        f1=sum(r.f1 for r in rows) / max(len(rows), 1),
        tool_calls=sum(r.tool_calls for r in rows) / max(len(rows), 1),
        format_valid=sum(r.valid_format for r in rows) / max(len(rows), 1),
        ci_low=ci_low,
        ci_high=ci_high,
        invalid_action_rate=sum(r.invalid_actions for r in rows) / max(sum(r.steps for r in rows), 1),
        supporting_recall=mean_supporting_recall(rows),
    )


def evaluate_policy(
    policy, tool, tasks: list[Task], config: EvalConfig, policy_name: str
) -> tuple[list[Trajectory], list[EvalRow], EvalSummary, list[Failure]]:
    greedy, failures = run_agent(
        policy,
        tool,
        tasks,
        config=config.agent,
        samples_per_task=1,
        temperature=0.0,
        seed=config.seed,
        policy_name=policy_name,
        stage="evaluate",
        progress="evaluate",
    )
    trajectories = list(greedy)
    if config.samples_per_task > 1:
        sampled, sampling_failures = run_agent(
            policy,
            tool,
            tasks,
            config=config.agent,
            samples_per_task=config.samples_per_task - 1,
            temperature=config.temperature,
            seed=config.seed + 1,
            policy_name=policy_name,
            stage="evaluate",
            progress="evaluate pass@k",
            first_sample_index=1,
        )
        trajectories += sampled
        failures += sampling_failures
    rows = score(trajectories, {t.id: t for t in tasks})
    return trajectories, rows, summarize(rows, policy_name, config.samples_per_task, config.k), failures


def produce_evaluation(work: Path, config: EvalConfig, inputs: Inputs, store: ArtifactStore) -> None:
    tasks = load_tasks(inputs["tasks"], "eval")
    far = out_of_reach(tasks, config.agent.max_turns)
    policy, policy_name = config.load_policy(inputs)
    trajectories, rows, summary, failures = evaluate_policy(
        policy,
        tool_for(inputs["index"], config.agent.tools),
        tasks,
        config,
        policy_name,
    )
    summary = summary.model_copy(update={"out_of_reach": len(far)})
    buckets = bucket_scores(rows, {t.id: t for t in tasks})
    write_table(work, rows)
    write_table(work, [summary], name="summary")
    write_table(work, trajectories, name="trajectories")
    write_table(work, buckets, name="buckets")
    if failures:
        write_table(work, failures, name="failures")


def load_summary(ref) -> EvalSummary:
    return read_rows(ref, EvalSummary, name="summary")[0]


def load_buckets(ref) -> list[BucketScore]:
    return read_rows(ref, BucketScore, name="buckets")


STAGE = Stage(
    name="evaluate",
    kind="evaluation",
    produce=produce_evaluation,
    config_model=EvalConfig,
    environment=lambda config, inputs: {"precision": precision(config.agent.engine)},
)
