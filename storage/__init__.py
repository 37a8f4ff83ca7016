"""Artifact store, DuckDB lineage catalog and the pydantic schemas of every artifact row."""

from storage.catalog import Catalog
from storage.ids import artifact_id, canonical_json
from storage.schemas import ArtifactRef
from storage.store import ArtifactStore, default_home

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "Catalog",
    "artifact_id",
    "canonical_json",
    "default_home",
]
