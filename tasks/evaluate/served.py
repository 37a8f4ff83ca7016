"""Evaluation of a served model (``openai:MODEL@URL``): the evaluate stage with no model artifact.

A local policy is an artifact (its weights are in the id); a served one is only a name and an
endpoint, so it travels in the config instead, and its trajectories name it as their policy. Scoring,
tables and summary are the evaluate stage's own.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from storage import ArtifactStore
from tasks.evaluate.summary import EvalConfig, produce_evaluation
from tasks.llm.engines import generator_from_spec
from tasks.llm.openai_api import check_openai_spec
from tasks.stage_spec import Inputs, Stage


class ServedEvalConfig(EvalConfig):
    policy: str = Field(description="The served model under evaluation: openai:MODEL or openai:MODEL@URL.")

    @field_validator("policy")
    @classmethod
    def _served(cls, spec: str) -> str:
        if not spec.startswith("openai:"):
            raise ValueError("a served policy is openai:MODEL or openai:MODEL@URL")
        return check_openai_spec(spec)

    def load_policy(self, inputs: Inputs) -> tuple[object, str]:
        return generator_from_spec(self.policy), self.policy


def produce_served_evaluation(
    work: Path, config: ServedEvalConfig, inputs: Inputs, store: ArtifactStore
) -> None:
    produce_evaluation(work, config, inputs, store)


STAGE = Stage(
    name="evaluate-served",
    kind="evaluation",
    produce=produce_served_evaluation,
    config_model=ServedEvalConfig,
)
