"""Content-addressed artifact ids.

An id is a digest of everything that determines an artifact's content: the stage, its config, the
ids of its inputs, the version of the code the stage runs (derived from its source, see
:mod:`storage.code_digest`) and the environment settings that shape its result (numeric precision,
prompt format). Same inputs give the same id, so a stage whose id is already in the store need not
run again; any change to a config value, an input, the code or that environment gives a new id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


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
    inputs: Mapping[str, str] | None,
    code_version: str,
    environment: Mapping[str, Any] | None = None,
) -> str:
    """Digest of (stage, canonical config, input ids by role, code version, environment): 20 hex."""
    ingredients = {
        "stage": stage,
        "config": config,
        "inputs": dict(sorted((inputs or {}).items())),
        "code": code_version,
    }
    if environment:
        ingredients["environment"] = dict(environment)
    payload = canonical_json(ingredients)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


ARTIFACT_ID_LENGTH = 20
_HEX_DIGITS = frozenset("0123456789abcdef")


def check_artifact_id(value: object) -> str:
    """The value if it has the shape of :func:`artifact_id`'s digests, else a ValueError.

    Ids given from outside (the CLI, a flow parameter) become directory names under the store, so
    anything but a digest, ``../x`` above all, must fail before it is joined to a path.
    """
    if not (isinstance(value, str) and len(value) == ARTIFACT_ID_LENGTH and set(value) <= _HEX_DIGITS):
        raise ValueError(
            f"{value!r} is not an artifact id: ids are {ARTIFACT_ID_LENGTH} lowercase hex characters, "
            "as trailforge artifacts lists them"
        )
    return value
