"""A bm25s index over a corpus artifact, stored as an artifact directory of its own."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactRef, ArtifactStore
from storage.store import read_table, write_table
from tasks.stage_spec import Inputs, Stage

DENSE_FILE = "dense.npy"


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = Field("lucene", description="BM25 variant (bm25s method).")
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    dense: bool = Field(
        False, description="Also embed every document with MiniLM, for dense and hybrid retrieval."
    )


def index_text(title: str, text: str) -> str:
    # The title is repeated so that a query naming an entity ranks that entity's own page first.
    return f"{title}. {title}. {text}"


def build_index(corpus: ArtifactRef, config: IndexConfig, out: Path) -> None:
    table = read_table(corpus).select(["id", "title", "text"])
    titles, texts = table.column("title").to_pylist(), table.column("text").to_pylist()
    tokens = bm25s.tokenize(
        [index_text(t, x) for t, x in zip(titles, texts, strict=True)], stopwords="en", show_progress=False
    )
    retriever = bm25s.BM25(method=config.method, k1=config.k1, b=config.b)
    retriever.index(tokens, show_progress=False)
    retriever.save(out / "bm25", show_progress=False)
    # The index keeps its own copy of the documents, so the search tool needs nothing else.
    write_table(out, table)
    if config.dense:
        from tasks.search.dense import load_encoder

        vectors = load_encoder().encode([f"{t}. {x}" for t, x in zip(titles, texts, strict=True)])
        np.save(out / DENSE_FILE, vectors)


def produce_index(work: Path, config: IndexConfig, inputs: Inputs, store: ArtifactStore) -> None:
    build_index(inputs["corpus"], config, work)


STAGE = Stage(name="index", kind="index", produce=produce_index, config_model=IndexConfig)
