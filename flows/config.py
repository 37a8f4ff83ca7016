"""Parameters of the pipeline flow, one pydantic model per stage.

The Prefect UI renders these as a form with the descriptions below; the CLI turns every field
into a ``--section.field`` flag. Unknown fields and invalid values fail before any work starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows.corpus_source import check_corpus, check_questions
from flows.orchestration import OrchestrationConfig
from tasks.agent.collect import SamplingConfig
from tasks.corpus.world import WorldConfig
from tasks.evaluate.summary import EvalConfig
from tasks.judge.annotate import AnnotateConfig
from tasks.llm.engines import check_model_spec
from tasks.llm.models import BaseModelConfig
from tasks.search.index import IndexConfig
from tasks.select.rejection import SelectConfig
from tasks.synthesis.corpus_stage import CorpusTasksConfig
from tasks.synthesis.stage import SynthesisConfig, check_capacity
from tasks.train.sft import TrainConfig


class CollectConfig(SamplingConfig):
    shard_size: int = Field(16, ge=1, le=100_000, description="Tasks per cached collection shard.")
    resample: int = Field(
        0,
        ge=0,
        le=1024,
        description="Difficulty-aware resampling (as DART-Math): this many more rollouts on each task the "
        "first samples_per_task answered right fewer than resample_below times. Uniform sampling keeps "
        "most from the tasks the policy already solves; the extra rollouts go where kept data is thin.",
    )
    resample_below: int = Field(
        1,
        ge=1,
        le=1024,
        description="resample: a task is resampled when fewer of its first rollouts were right.",
    )

    @model_validator(mode="after")
    def _resampling_can_differ(self) -> CollectConfig:
        if self.resample and self.temperature == 0:
            raise ValueError("collect.resample at temperature 0 would repeat the first, greedy rollouts")
        if self.resample and self.resample_below > self.samples_per_task:
            raise ValueError(
                f"collect.resample_below ({self.resample_below}) is above collect.samples_per_task "
                f"({self.samples_per_task}): every task would be resampled; raise samples_per_task instead"
            )
        return self

    def sampling(self) -> dict:
        """The settings every collection shard shares (the resampling pass adds its own)."""
        return self.model_dump(exclude={"shard_size", "resample", "resample_below"})


class ColdStartConfig(BaseModel):
    """SFT on demonstrations before the rounds, for a base policy that cannot follow the protocol yet."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["oracle", "teacher", "none"] = Field(
        "oracle",
        description="oracle: gold paths through the real tools; teacher: a teacher model's correct "
        "trajectories; none: no cold start (round 1 then needs select.oracle_fallback).",
    )
    teacher: str | None = Field(None, description="source=teacher: hf:PATH, vllm:PATH or openai:MODEL@URL.")
    tasks: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Training tasks with a demonstration, in proportion per bucket (default: all); the "
        "rounds then learn the rest from answers alone.",
    )
    seed: int = Field(0, description="Which tasks get a demonstration when `tasks` is below the pool.")
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, spec: str | None) -> str | None:
        return spec if spec is None else check_model_spec(spec)

    @model_validator(mode="after")
    def _teacher_named(self) -> ColdStartConfig:
        if self.source == "teacher" and not self.teacher:
            raise ValueError("cold_start.source 'teacher' needs cold_start.teacher (a model spec)")
        return self


def round_training() -> TrainConfig:
    """Rounds continue from a checkpoint that already fits its data: a low, flat learning rate.

    A fresh warm-up to 2e-4 and cosine decay on every round knocked a fitted policy off its optimum
    (round 2's loss rose while it trained, and held-out pass@1 fell). Even a flat 1e-4 moved a
    135M policy's sense of which hop each kind of question wants so far that every round lost ten
    points; at 2e-5 round 1 gained five. A round also needs steps enough to see what it kept: 24
    steps of two sequences drew a third of round 1's 156 examples and gained five points; 64 steps
    gained 11.5 (the README's rounds section).
    """
    return TrainConfig(max_steps=64, learning_rate=2e-5, warmup_ratio=0.0, lr_scheduler="constant")


class PoolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extra_tasks: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Training tasks for the rounds beyond synthesis.train_tasks, synthesised after the "
        "held-out split is fixed and sharing nothing with it (extend-pool): the cold start, its "
        "demonstrations and the held-out tasks stay what they were, so the rounds of a grown pool "
        "compare with those of the pool before it. Synthetic world only.",
    )


class PipelineConfig(BaseModel):
    """Everything one pipeline run depends on; equal configs give equal artifact ids."""

    # a rejected value (a URL with a password in it, say) is not echoed into logs
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    home: str | None = Field(None, description="Store root; defaults to $TRAILFORGE_HOME or ./.trailforge.")
    rounds: int = Field(1, ge=1, le=100, description="Collect-annotate-select-train-evaluate rounds.")
    corpus: str | None = Field(
        None,
        description="Your own corpus instead of the synthetic world: a file, a directory of files "
        "(.jsonl/.parquet/.csv with id, title, text) or a corpus artifact id (trailforge corpus). Tasks "
        "are then read from its pages (corpus_tasks); synthesis.train_tasks, eval_tasks, seed, "
        "evidence_top_k, answer_depth and no_tool_model apply to them.",
    )
    eval_questions: str | None = Field(
        None,
        description="A question set about the corpus (JSONL/CSV/Parquet: id, question, answer, "
        "aliases, supporting): every round's policy is also evaluated on it ('user questions').",
    )
    world: WorldConfig = Field(default_factory=WorldConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    corpus_tasks: CorpusTasksConfig = Field(
        default_factory=CorpusTasksConfig, description="What tasks are read from a user corpus (with corpus)."
    )
    policy: BaseModelConfig = Field(default_factory=BaseModelConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    train: TrainConfig = Field(
        default_factory=round_training,
        description="Training in each round, on every selection so far (from where train_from says).",
    )
    train_from: Literal["previous", "start"] = Field(
        "previous",
        description="Where each round's training starts. previous: the previous round's policy, for the "
        "round's steps. start: the policy round 1 collected with (the cold start), afresh, for the steps "
        "of every round so far, so each round's policy has trained as long as a continued one (STaR's and "
        "ReST-EM's restart: one round's drift is not carried into the next).",
    )
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    orchestration: OrchestrationConfig = Field(
        default_factory=OrchestrationConfig,
        description="Where stages run (thread pool or Dask) and the concurrency limit guarding models.",
    )

    @model_validator(mode="after")
    def _oracle_sees_the_evidence(self) -> PipelineConfig:
        shown = self.collect.agent.tools.top_k
        if self.synthesis.evidence_top_k > shown:
            raise ValueError(
                f"synthesis.evidence_top_k {self.synthesis.evidence_top_k} is above collect.agent.tools."
                f"top_k {shown}: tasks would be kept whose evidence the agent's search never shows"
            )
        return self

    @model_validator(mode="after")
    def _round_one_has_data(self) -> PipelineConfig:
        if self.cold_start.source == "none" and not self.select.oracle_fallback:
            raise ValueError(
                "with cold_start.source 'none' a base policy that cannot follow the protocol gives round 1 "
                "nothing to train on; set select.oracle_fallback true or choose a cold start"
            )
        return self

    @field_validator("train", mode="before")
    @classmethod
    def _round_training_fills_the_gaps(cls, value):
        """``--train.max-steps 40`` changes the steps of the rounds' recipe, not the recipe: fields
        left out come from :func:`round_training`, not from ``TrainConfig``'s cold-start defaults."""
        if isinstance(value, dict):
            return {**round_training().model_dump(), **value}
        return value

    @field_validator("corpus", "eval_questions", mode="before")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        """A form's emptied field (or an unset variable in a deployment) means none."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _user_files_parse(self) -> PipelineConfig:
        """A corpus or question set that cannot be read fails here, before any artifact is written."""
        if self.corpus is not None:
            check_corpus(self.corpus, self.home)
        if self.eval_questions is not None:
            check_questions(self.eval_questions)
        return self

    @model_validator(mode="after")
    def _rounds_have_tasks_to_sample(self) -> PipelineConfig:
        demonstrated = self.cold_start.tasks or self.synthesis.train_tasks
        pool = self.synthesis.train_tasks + self.pool.extra_tasks  # demonstrations come from the first
        if self.collect.skip_demonstrated and self.cold_start.source != "none" and demonstrated >= pool:
            raise ValueError(
                f"collect.skip_demonstrated leaves the rounds no task: cold_start.tasks ({demonstrated}) "
                f"covers all {pool} training tasks; set it below synthesis.train_tasks or grow the pool "
                "(pool.extra_tasks)"
            )
        return self

    @model_validator(mode="after")
    def _world_holds_the_mix(self) -> PipelineConfig:
        """A target mix the world cannot hold fails here, before any artifact is written."""
        if self.corpus is None:  # a user corpus replaces the world
            check_capacity(self.world, self.synthesis, self.pool.extra_tasks)
        elif self.pool.extra_tasks:
            raise ValueError(
                "pool.extra_tasks grows the synthetic world's task pool; with a corpus, ask for more "
                "synthesis.train_tasks instead"
            )
        return self
