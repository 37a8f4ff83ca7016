"""``trailforge evaluate``: any policy on a user's own questions about their own corpus.

The corpus is validated, stored and indexed, the question set checked and resolved against it, the
policy prepared and evaluated, each as a stage of one local stage runner: every artifact is cached
(a rerun with the same files and policy computes nothing) and recorded in lineage. The question
file and the policy spec are checked before anything is built, so a broken line costs no model load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.corpus_source import ingest_questions
from flows.stages import StageEvent, StageRunner, local_stage_runner
from storage import ArtifactRef
from storage.ids import check_artifact_id
from storage.schemas import EvalSummary
from tasks.corpus.questions import QuestionsConfig, read_questions
from tasks.corpus.user import CorpusConfig, pin
from tasks.evaluate.summary import EvalConfig, load_summary
from tasks.llm.engines import SPEC_FORMS
from tasks.llm.models import SMOLLM2, BaseModelConfig, validate_model_spec
from tasks.search.index import IndexConfig

# Names a user types for the packaged models, beside the full specs.
SHORT_NAMES = {"smollm2": f"hf:{SMOLLM2}", SMOLLM2: f"hf:{SMOLLM2}", "tiny": "hf:tiny"}


class PolicySpecError(ValueError):
    """A policy spec that names no model this command can evaluate."""


@dataclass(frozen=True)
class PolicyChoice:
    """What a policy spec resolves to, decided without loading anything."""

    source: Literal["artifact", "base-model", "served"]
    spec: str  # an artifact id, a base-model spec (hf:...) or a served spec (openai:...)
    engine: Literal["hf", "vllm"] = "hf"


def resolve_policy(spec: str) -> PolicyChoice:
    """An artifact id (model or checkpoint), a short name, ``hf:``, ``vllm:`` or ``openai:`` spec."""
    spec = spec.strip()
    try:
        return PolicyChoice("artifact", check_artifact_id(spec))
    except ValueError:
        pass
    spec = SHORT_NAMES.get(spec, spec)
    engine, _, target = spec.partition(":")
    try:
        if engine == "openai":
            from tasks.llm.openai_api import check_openai_spec

            return PolicyChoice("served", check_openai_spec(spec))
        if engine in ("hf", "vllm"):
            return PolicyChoice("base-model", validate_model_spec(f"hf:{target}"), engine)
    except ValueError as error:  # its message hides any credentials in the spec; the spec is not echoed
        raise PolicySpecError(f"--policy: {error}") from None
    raise PolicySpecError(
        f"--policy: {engine!r} is not a model spec; expected a model or checkpoint id, smollm2, tiny "
        f"or {SPEC_FORMS}"
    )


class UserEvalConfig(BaseModel):
    """What ``trailforge evaluate`` was asked; recorded as the run's parameters."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field(
        description="A model or checkpoint id, smollm2, tiny, hf:PATH, vllm:PATH or openai:MODEL@URL."
    )
    corpus: CorpusConfig
    questions: QuestionsConfig
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    home: str | None = None


@dataclass(frozen=True)
class UserEvalResult:
    evaluation: ArtifactRef
    summary: EvalSummary
    events: list[StageEvent]


def evaluate_questions(config: UserEvalConfig) -> UserEvalResult:
    """Corpus, index, question set, policy, evaluation: built or reused, all recorded in lineage.

    Raises QuestionsError, CorpusError or PolicySpecError on input that cannot be used, the first
    two before any model is prepared.
    """
    read_questions(config.questions)
    policy = resolve_policy(config.policy)
    with local_stage_runner("trailforge-evaluate", config, config.home) as run:
        corpus = run("corpus", pin(config.corpus), {})
        index = run("index", IndexConfig(), {"corpus": corpus})
        tasks = ingest_questions(run, config.questions, corpus)
        evaluation = _evaluate(run, policy, config.evaluate, {"tasks": tasks, "index": index})
    return UserEvalResult(evaluation, load_summary(evaluation), run.events)


def _evaluate(run: StageRunner, policy: PolicyChoice, config: EvalConfig, inputs: dict) -> ArtifactRef:
    if policy.source == "served":
        from tasks.evaluate.served import ServedEvalConfig

        return run("evaluate-served", ServedEvalConfig(**config.model_dump(), policy=policy.spec), inputs)
    if policy.source == "artifact":
        from flows.recipe import find_artifact

        try:
            model = find_artifact(run.store, policy.spec, ("checkpoint", "model"))
        except ValueError as error:
            raise PolicySpecError(f"--policy: {error}") from None
    else:
        model = run("base-model", BaseModelConfig(spec=policy.spec), {})
    agent = config.agent.model_copy(update={"engine": policy.engine})
    return run("evaluate", config.model_copy(update={"agent": agent}), {**inputs, "model": model})


def summary_table(summary: EvalSummary) -> str:
    """One row per policy: the scores, and supporting-page recall where the questions name pages."""
    recall = summary.supporting_recall is not None
    header = "policy                 tasks  pass@1  pass@k    EM    F1  tools/traj  format-ok"
    row = (
        f"{summary.policy[:22]:22s} {summary.tasks:5d} {summary.pass_at_1:7.1%} {summary.pass_at_k:7.1%} "
        f"{summary.exact_match:5.2f} {summary.f1:5.2f} {summary.tool_calls:11.2f} {summary.format_valid:10.1%}"
    )
    if recall:
        header += "  supporting"
        row += f" {summary.supporting_recall:11.1%}"
    return f"{header}\n{row}"
