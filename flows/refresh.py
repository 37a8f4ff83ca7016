"""The refresh flow: keep a user corpus's artifacts in step with its files, on a schedule.

It digests the corpus files (bytes, not timestamps) and compares with what the store holds. An
unchanged corpus is a no-op: nothing is read beyond the digest and no artifact is created. A
changed one gets a new corpus artifact and a new index, both recorded in lineage with an edge
from the corpus version they replace, so ``trailforge lineage`` shows the refresh history.
"""

from __future__ import annotations

import json
import time

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from pydantic import BaseModel, ConfigDict, Field

from flows.stages import StageRunner
from storage import ArtifactRef, ArtifactStore, Catalog
from tasks.corpus.user import CorpusConfig, pin
from tasks.search.index import IndexConfig
from tasks.stage import get_stage, stage_artifact_id


class RefreshConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    corpus: CorpusConfig
    index: IndexConfig = Field(default_factory=IndexConfig)
    home: str | None = Field(None, description="Store root; defaults to $TRAILFORGE_HOME or ./.trailforge.")


class RefreshResult(BaseModel):
    changed: bool
    corpus_id: str
    index_id: str
    seconds: float


@flow(name="trailforge-refresh")
def refresh(config: RefreshConfig) -> RefreshResult:
    started = time.perf_counter()
    logger = get_run_logger()
    store = ArtifactStore(config.home)
    catalog = Catalog(store.catalog_path)
    source = pin(config.corpus)
    corpus_id = stage_artifact_id(get_stage("corpus"), source, {})
    if store.exists("corpus", corpus_id):
        index_id = stage_artifact_id(
            get_stage("index"), config.index, {"corpus": store.ref("corpus", corpus_id)}
        )
        if store.exists("index", index_id):
            logger.info(
                "corpus %s unchanged (digest %s): nothing to do",
                config.corpus.path,
                source.content_digest[:12],
            )
            return RefreshResult(
                changed=False, corpus_id=corpus_id, index_id=index_id, seconds=time.perf_counter() - started
            )

    previous = _latest_version(catalog, config.corpus.path)
    run = StageRunner(store, catalog, str(get_run_context().flow_run.id))
    corpus = run("corpus", source, {})
    if previous is not None and previous.id != corpus.id:
        catalog.record(corpus, {"supersedes": previous})  # an edge only: the row exists already
    index = run("index", config.index, {"corpus": corpus})
    logger.info("corpus %s changed: corpus %s, index %s", config.corpus.path, corpus.id, index.id)
    return RefreshResult(
        changed=True, corpus_id=corpus.id, index_id=index.id, seconds=time.perf_counter() - started
    )


def _latest_version(catalog: Catalog, path: str) -> ArtifactRef | None:
    """The newest corpus artifact built from the same path: what this refresh supersedes."""
    rows = [
        r
        for r in catalog.query("SELECT * FROM artifacts WHERE kind = 'corpus' ORDER BY created_at")
        if json.loads(r["config_json"]).get("path") == path
    ]
    if not rows:
        return None
    newest = rows[-1]
    return ArtifactRef(id=newest["id"], kind="corpus", stage="corpus", uri=newest["uri"], rows=newest["rows"])
