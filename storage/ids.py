"""Content-addressed artifact ids.

An id is a digest of everything that determines an artifact's content: the stage, its config, the
ids of its inputs and the code version. Same inputs give the same id, so a stage whose id is already
in the store need not run again; any change to a config value, an input or the code gives a new id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

# Bump when a stage's output changes for the same inputs; every id changes with it.
CODE_VERSION = "0.1.0"


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal configs always serialise alike."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def artifact_id(
    stage: str,
    config: Any,
    inputs: Mapping[str, str] | None = None,
    code_version: str = CODE_VERSION,
) -> str:
    """Digest of (stage, canonical config, input ids by role, code version): 20 hex characters."""
    payload = canonical_json(
        {
            "stage": stage,
            "config": config,
            "inputs": dict(sorted((inputs or {}).items())),
            "code": code_version,
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]
