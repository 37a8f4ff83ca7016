"""A Search-R1-compatible retriever server over a Trailforge index.

``POST /retrieve`` takes ``{queries, topk, return_scores}`` and answers
``{result: [[{document: {id, contents}, score}]]}`` (without the score wrapper when
``return_scores`` is false), exactly as Search-R1's ``retrieval_server.py``, so agents trained with
either tool can share one server. ``POST /access`` returns whole pages by id. A batch of queries is
one bm25s call, which is what lets a single request carry hundreds of queries.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel, Field

from tasks.search.tools import SearchTool

MAX_QUERIES_PER_REQUEST = 10_000


class RetrieveRequest(BaseModel):
    queries: list[str] = Field(max_length=MAX_QUERIES_PER_REQUEST)
    topk: int = Field(3, ge=1, le=1000)
    return_scores: bool = True


class AccessRequest(BaseModel):
    ids: list[str] = Field(default_factory=list, max_length=MAX_QUERIES_PER_REQUEST)
    urls: list[str] = Field(default_factory=list, max_length=MAX_QUERIES_PER_REQUEST)


def contents(title: str, text: str) -> str:
    """Search-R1's passage format: the quoted title on the first line, then the text."""
    return f'"{title}"\n{text}'


def split_contents(value: str) -> tuple[str, str]:
    first, _, rest = value.partition("\n")
    return first.strip().strip('"'), rest


def create_app(tool: SearchTool) -> FastAPI:
    app = FastAPI(title="Trailforge retriever", description=__doc__)

    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest) -> dict:
        results = tool.search_documents(request.queries, k=request.topk)
        if request.return_scores:
            return {
                "result": [
                    [{"document": {"id": d, "contents": contents(t, x)}, "score": s} for d, t, x, s in hits]
                    for hits in results
                ]
            }
        return {
            "result": [[{"id": d, "contents": contents(t, x)} for d, t, x, _ in hits] for hits in results]
        }

    @app.post("/access")
    def access(request: AccessRequest) -> dict:
        pages = []
        for doc_id in [*request.ids, *request.urls]:
            found = tool.document(doc_id)
            pages.append(None if found is None else {"id": doc_id, "contents": contents(*found)})
        return {"result": pages}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "documents": len(tool.ids)}

    return app


def serve(index_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(SearchTool(index_dir)), host=host, port=port, log_level="info")
