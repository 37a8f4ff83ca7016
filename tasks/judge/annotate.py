"""Annotation: every judge family over a trajectories artifact, as cached shards merged into one.

A shard is a slice of the trajectories (``shard_size`` rows, in the order of the input tables), so a
killed annotation run keeps every finished shard and a rerun judges only the rest. Per trajectory a
shard writes the outcome (exact match and token F1 of the last ``<answer>``), the reference judge's
step ratings, process score, critique and search usefulness (where the task carries gold evidence),
the verdicts of any model judges configured (step judge, reward model, usefulness judge, outcome
judge; each family's calls of a shard in one batch), and the rewards built from them (among them
the process rubric's, :mod:`tasks.rubrics.process`). The merge stage joins the shards and computes
the judge reliability report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage import ArtifactStore
from storage.schemas import (
    Annotation,
    Failure,
    JudgeAgreement,
    Judgement,
    JudgeReliability,
    Rewards,
    Task,
    Trajectory,
)
from storage.store import read_rows, read_table, write_table
from tasks.judge.reference import JUDGE_NAME, reference_judgements
from tasks.llm.engines import check_model_spec, spec_environment
from tasks.rewards.answered import prediction
from tasks.rewards.combine import REWARDS, RewardInputs
from tasks.rewards.outcome import exact_match, token_f1
from tasks.rubrics.process import process_reward
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.evidence import load_tasks
from tasks.turns import TOOL_ACTIONS

MODEL_FAMILIES = ("step", "process", "usefulness", "outcome")


class AnnotateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    judge: str = Field(
        JUDGE_NAME,
        description="Step judge (SRR-Judge) whose ratings drive selection: reference (gold evidence, "
        "no model) or a judge model: hf:PATH, vllm:PATH or openai:MODEL@URL.",
    )
    granularity: Literal["trajectory", "step"] = Field(
        "trajectory", description="A model step judge is asked once per trajectory or once per step."
    )
    reward_model: str | None = Field(
        None,
        description="Agent-RRM judge model (<think>, <critique>, <score>); default: the reference "
        "judge's process score.",
    )
    usefulness_judge: str | None = Field(
        None, description="Search-R2 usefulness judge model; default: gold evidence (reference)."
    )
    outcome_judge: str | None = Field(
        None, description="Binary LLM-as-judge of the final answer, beside exact match and F1."
    )
    max_reasks: int = Field(2, ge=0, le=10, description="Re-asks of a judge model after a malformed reply.")
    max_new_tokens: int = Field(384, ge=16, le=8192, description="Tokens per judge-model reply at most.")
    reagent_lambda: float = Field(0.3, ge=0, le=10, description="Reagent's lambda in rule + lambda * score.")
    shard_size: int = Field(256, ge=1, le=100_000, description="Trajectories per cached annotation shard.")

    @field_validator("judge")
    @classmethod
    def _known_judge(cls, spec: str) -> str:
        return spec if spec == JUDGE_NAME else check_model_spec(spec)

    @field_validator("reward_model", "usefulness_judge", "outcome_judge")
    @classmethod
    def _known_model(cls, spec: str | None) -> str | None:
        return spec if spec is None else check_model_spec(spec)

    def model_judges(self) -> dict[str, str]:
        """Family -> model spec, for the families a judge model runs."""
        judges = {
            "step": None if self.judge == JUDGE_NAME else self.judge,
            "process": self.reward_model,
            "usefulness": self.usefulness_judge,
            "outcome": self.outcome_judge,
        }
        return {family: spec for family, spec in judges.items() if spec}

    def for_id(self) -> AnnotateConfig:
        """Without a judge model, how models are asked cannot change a result."""
        if self.model_judges():
            return self
        defaults = {
            k: type(self).model_fields[k].default for k in ("granularity", "max_reasks", "max_new_tokens")
        }
        return self.model_copy(update=defaults)


class AnnotateShardConfig(AnnotateConfig):
    shard_index: int = Field(0, ge=0)


def n_shards(rows: int, shard_size: int) -> int:
    return max(1, math.ceil(rows / shard_size))


def annotate(trajectory: Trajectory, task: Task) -> Annotation:
    """Outcome and the reference judge's step ratings (the default pipeline's annotation)."""
    return _annotation(trajectory, task, reference_judgements(trajectory, task, prediction(trajectory))[0])


def _annotation(trajectory: Trajectory, task: Task, step: Judgement | None) -> Annotation:
    answers, answer = [task.answer, *task.aliases], prediction(trajectory)
    ratings = step.step_ratings if step else []
    return Annotation(
        trajectory_id=trajectory.id,
        task_id=task.id,
        policy=trajectory.policy,
        exact_match=exact_match(answer, answers),
        f1=token_f1(answer, answers),
        step_ratings=ratings,
        mean_rating=sum(ratings) / len(ratings) if ratings else 0.0,
        min_rating=min(ratings) if ratings else 0,
        tool_calls=sum(s.action in TOOL_ACTIONS for s in trajectory.steps),
        judge=step.judge if step else "",
        judged=step is not None,
    )


def _judge_models(config: AnnotateConfig):
    from tasks.judge.asking import JudgeModel
    from tasks.llm.engines import generator_from_spec

    return {
        family: JudgeModel(generator_from_spec(spec), spec, config.max_new_tokens, config.max_reasks)
        for family, spec in config.model_judges().items()
    }


def judge_shard(
    items: list[tuple[Trajectory, Task]], config: AnnotateConfig, models: dict | None = None
) -> tuple[list[Annotation], list[Judgement], list[Rewards], list[Failure]]:
    """Every configured judge over these trajectories; ``models`` (family -> JudgeModel) for tests."""
    from tasks.judge.outcome_judge import judge_outcomes
    from tasks.judge.reward_model import judge_process
    from tasks.judge.step_judge import judge_steps
    from tasks.judge.usefulness import judge_usefulness

    models = _judge_models(config) if models is None else models
    judgements: list[Judgement] = []
    chosen: dict[str, dict[str, Judgement]] = {family: {} for family in MODEL_FAMILIES}
    for t, task in items:
        if task.hops:  # the reference needs gold evidence
            for j in reference_judgements(t, task, prediction(t)):
                judgements.append(j)
                chosen[j.family][t.id] = j
    failures: list[Failure] = []
    runs = {
        "step": lambda m: judge_steps(m, items, config.granularity),
        "process": lambda m: judge_process(m, items),
        "usefulness": lambda m: judge_usefulness(m, items),
        "outcome": lambda m: judge_outcomes(m, [(t, task, prediction(t)) for t, task in items]),
    }
    for family, model in models.items():
        judged, failed = runs[family](model)
        judgements += judged.values()
        failures += failed
        chosen[family] = judged  # a model judge replaces the reference where it is configured
    annotations, rewards = [], []
    for t, task in items:
        annotation = _annotation(t, task, chosen["step"].get(t.id))
        annotations.append(annotation)
        useful, process = chosen["usefulness"].get(t.id), chosen["process"].get(t.id)
        inputs = RewardInputs(
            exact_match=annotation.exact_match,
            f1=annotation.f1,
            useful=useful.useful if useful else None,
            process_score=process.score if process else None,
            reagent_lambda=config.reagent_lambda,
            rubric=process_reward(t, task),
        )
        rewards.append(
            Rewards(
                trajectory_id=t.id,
                task_id=task.id,
                policy=t.policy,
                **{name: reward(inputs) for name, reward in REWARDS.items()},
                process_judge=process.judge if process else "",
                usefulness_judge=useful.judge if useful else "",
            )
        )
    return annotations, judgements, rewards, failures


def shard_trajectories(sources: list, shard_index: int, shard_size: int) -> list[Trajectory]:
    """Rows ``[k * size, (k + 1) * size)`` of the input tables taken in order; only those are parsed."""
    start, end, offset, rows = shard_index * shard_size, (shard_index + 1) * shard_size, 0, []
    for source in sources:
        table = read_table(source)
        lo, hi = max(start - offset, 0), min(end - offset, table.num_rows)
        if lo < hi:
            rows += [Trajectory.model_validate(r) for r in table.slice(lo, hi - lo).to_pylist()]
        offset += table.num_rows
    return rows


def produce_shard(work: Path, config: AnnotateShardConfig, inputs: Inputs, store: ArtifactStore) -> None:
    tasks = {t.id: t for t in load_tasks(inputs["tasks"])}
    items, failures = [], []
    for trajectory in shard_trajectories(inputs["trajectories"], config.shard_index, config.shard_size):
        task = tasks.get(trajectory.task_id)
        if task is None:
            failures.append(
                Failure(
                    stage="annotate-shard",
                    item_id=trajectory.id,
                    error_class="UnknownTask",
                    message=f"trajectory refers to task {trajectory.task_id!r}, which is not in the task set",
                )
            )
            continue
        items.append((trajectory, task))
    annotations, judgements, rewards, judge_failures = judge_shard(items, config)
    write_table(work, annotations)
    write_table(work, judgements, name="judgements")
    write_table(work, rewards, name="rewards")
    if failures or judge_failures:
        write_table(work, failures + judge_failures, name="failures")


def _concat(shards: list, name: str) -> pa.Table:
    tables = [t for t in (read_table(s, name) for s in shards) if t.num_rows]
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def produce_annotations(work: Path, config: AnnotateConfig, inputs: Inputs, store: ArtifactStore) -> None:
    """Join the shards; the reliability report over all of them (the shards keep their failures)."""
    from tasks.judge.reliability import reliability

    shards = inputs["shards"]
    for name in ("data", "judgements", "rewards"):
        write_table(work, _concat(shards, name), name=name)
    judges, pairs = reliability(
        [j for s in shards for j in read_rows(s, Judgement, "judgements")],
        [a for s in shards for a in read_rows(s, Annotation)],
        [f for s in shards for f in read_rows(s, Failure, "failures")],
        config.model_judges(),
    )
    write_table(work, judges, name="reliability")
    write_table(work, pairs, name="agreement")


def load_reliability(ref) -> tuple[list[JudgeReliability], list[JudgeAgreement]]:
    return read_rows(ref, JudgeReliability, "reliability"), read_rows(ref, JudgeAgreement, "agreement")


def judges_environment(config: AnnotateConfig, inputs: Inputs) -> dict:
    """The weights and precision behind local judge-model paths."""
    return {family: spec_environment(spec) for family, spec in config.model_judges().items()}


SHARD_STAGE = Stage(
    name="annotate-shard",
    kind="annotation-shard",
    produce=produce_shard,
    config_model=AnnotateShardConfig,
    environment=judges_environment,
)
STAGE = Stage(name="annotate", kind="annotations", produce=produce_annotations, config_model=AnnotateConfig)
