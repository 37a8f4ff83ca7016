"""What a stage is: a name, the kind of artifact it makes, and the function that makes it.

Stage modules import this and nothing of the runner (:mod:`tasks.stage`). A stage's code version
is a digest of every project module it reaches by imports, so a stage module that imported the
runner would count the registry of all stages, the Prefect task and its retry rule as its own code:
adding a stage, or changing how stages are retried, would give every artifact of every store a new
id and rebuild it. Kept apart, a stage's id changes only when code it runs does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from storage import ArtifactRef, ArtifactStore
from storage.code_digest import code_version
from storage.schemas import ArtifactKind

Inputs = Mapping[str, ArtifactRef | list[ArtifactRef]]
Produce = Callable[[Path, Any, Inputs, ArtifactStore], None]
Environment = Callable[[Any, Inputs], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    name: str
    kind: ArtifactKind
    produce: Produce
    config_model: type[BaseModel]
    environment: Environment | None = None  # result-shaping settings that are not parameters

    @property
    def code_version(self) -> str:
        return code_version(self.produce.__module__)
