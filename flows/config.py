"""Parameters of the pipeline flow, one pydantic model per stage.

The Prefect UI renders these as a form with the descriptions below; the CLI turns every field
into a ``--section.field`` flag. Unknown fields and invalid values fail before any work starts.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.orchestration import OrchestrationConfig
from tasks.agent.collect import SamplingConfig
from tasks.corpus.world import WorldConfig
from tasks.evaluate.summary import EvalConfig
from tasks.judge.annotate import AnnotateConfig
from tasks.llm.models import BaseModelConfig
from tasks.search.index import IndexConfig
from tasks.select.rejection import SelectConfig
from tasks.synthesis.stage import SynthesisConfig, check_capacity
from tasks.train.sft import TrainConfig


class CollectConfig(SamplingConfig):
    shard_size: int = Field(16, ge=1, le=100_000, description="Tasks per cached collection shard.")


class PipelineConfig(BaseModel):
    """Everything one pipeline run depends on; equal configs give equal artifact ids."""

    # a rejected value (a URL with a password in it, say) is not echoed into logs
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    home: str | None = Field(None, description="Store root; defaults to $TRAILFORGE_HOME or ./.trailforge.")
    rounds: int = Field(1, ge=1, le=100, description="Collect-annotate-select-train-evaluate rounds.")
    world: WorldConfig = Field(default_factory=WorldConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    policy: BaseModelConfig = Field(default_factory=BaseModelConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
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
    def _world_holds_the_mix(self) -> PipelineConfig:
        """A target mix the world cannot hold fails here, before any artifact is written."""
        check_capacity(self.world, self.synthesis)
        return self

    @property
    def n_shards(self) -> int:
        return math.ceil(self.synthesis.train_tasks / self.collect.shard_size)
