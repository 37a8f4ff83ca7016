"""The retriever server over a real socket, driven the way Search-R1's agent code calls it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from storage.schemas import Entity
from storage.store import read_rows
from tasks.search.client import RemoteSearchTool, RetrieverError
from tasks.search.server import create_app


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("retriever server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server_url(tool) -> Iterator[str]:
    with running(create_app(tool)) as url:
        yield url


def test_search_r1_client_sends_400_queries_in_one_request(server_url, world_ref):
    people = [e for e in read_rows(world_ref, Entity, "entities") if e.type == "person"]
    queries = [f"{people[i % len(people)].name} born in {i}" for i in range(400)]
    # Search-R1's own client: requests.post(url, json=payload).json()["result"]
    payload = {"queries": queries, "topk": 3, "return_scores": True}
    result = httpx.post(f"{server_url}/retrieve", json=payload, timeout=60).json()["result"]
    assert len(result) == 400
    for i, hits in enumerate(result):
        assert len(hits) == 3
        person = people[i % len(people)]
        assert hits[0]["document"]["id"] == f"doc-{person.id}"
        assert hits[0]["document"]["contents"].startswith(f'"{person.name}"\n')
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    plain = httpx.post(
        f"{server_url}/retrieve", json={"queries": queries[:2], "topk": 2, "return_scores": False}
    ).json()["result"]
    assert set(plain[0][0]) == {"id", "contents"}


def test_remote_tool_gives_the_same_hits_as_the_local_tool(server_url, tool, world_ref):
    remote = RemoteSearchTool(server_url, batch_size=7)
    people = [e for e in read_rows(world_ref, Entity, "entities") if e.type == "person"][:20]
    queries = [f"{p.name} works for" for p in people]
    assert remote.search(queries, k=3) == tool.search(queries, k=3)
    doc_id = f"doc-{people[0].id}"
    assert remote.open(doc_id) == tool.open(doc_id)
    assert remote.open("no-such-doc") is None
    invalid = httpx.post(f"{server_url}/retrieve", json={"queries": ["x"], "topk": 0})
    assert invalid.status_code == 422


def test_client_retries_429_and_5xx_and_gives_up_with_a_clear_error(tool):
    app = create_app(tool)
    calls = {"n": 0}

    @app.middleware("http")
    async def flaky(request: Request, call_next):
        calls["n"] += 1
        if calls["n"] % 2 == 1:  # every request is refused once: 429 and 503 in turn
            return Response(status_code=429 if calls["n"] % 4 == 1 else 503)
        return await call_next(request)

    with running(app) as url:
        remote = RemoteSearchTool(url, batch_size=5, backoff_s=0.01)
        queries = [f"query number {i} city" for i in range(20)]
        assert remote.search(queries, k=2) == tool.search(queries, k=2)
        assert calls["n"] == 8  # 4 batches, each refused once

    def always_down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    broken = RemoteSearchTool(
        "http://retriever",
        max_retries=2,
        backoff_s=0.0,
        client=httpx.Client(transport=httpx.MockTransport(always_down)),
    )
    with pytest.raises(RetrieverError, match="failed after 3 attempts"):
        broken.search(["anything"], k=1)


def test_agent_stages_can_search_through_a_retriever_server(server_url, tool, index_ref, tasks_ref):
    from tasks.agent.environment import ToolConfig, tool_for
    from tasks.agent.oracle import oracle_trajectory
    from tasks.synthesis.evidence import load_tasks

    remote = tool_for(index_ref, ToolConfig(retriever_url=server_url))
    assert isinstance(remote, RemoteSearchTool)
    for task in load_tasks(tasks_ref, "train")[:4]:
        through_server, _ = oracle_trajectory(task, remote, ToolConfig())
        local, _ = oracle_trajectory(task, tool, ToolConfig())
        assert through_server == local


def test_an_oversize_body_gets_413_and_the_server_goes_on(tool):
    limit = 4096  # small, so an oversize body still fits in the socket buffers
    with running(create_app(tool, max_body_bytes=limit)) as url:
        oversize = {"queries": ["alder tree " * 50] * 10, "topk": 3}
        declared = httpx.post(f"{url}/retrieve", json=oversize)  # Content-Length tells
        assert declared.status_code == 413 and f"over {limit} bytes" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # chunked: no Content-Length, the server counts what arrives
            yield b'{"queries": ["'
            for _ in range(20):
                yield b"alder tree " * 40
            yield b'"], "topk": 3}'

        streamed = httpx.post(
            f"{url}/retrieve", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        small = httpx.post(f"{url}/retrieve", json={"queries": ["alder"], "topk": 2})
        assert small.status_code == 200 and len(small.json()["result"]) == 1


def test_too_many_queries_too_long_a_query_or_too_big_a_topk_get_422(server_url):
    from tasks.search.server import MAX_HITS_PER_REQUEST, MAX_QUERIES_PER_REQUEST, MAX_QUERY_CHARS, MAX_TOPK

    refused = {
        "queries": {"queries": ["alder"] * (MAX_QUERIES_PER_REQUEST + 1), "topk": 1},
        "query length": {"queries": ["a" * (MAX_QUERY_CHARS + 1)], "topk": 1},
        "topk": {"queries": ["alder"], "topk": MAX_TOPK + 1},
        "documents": {"queries": ["alder"] * (MAX_HITS_PER_REQUEST // MAX_TOPK + 1), "topk": MAX_TOPK},
    }
    for bound, payload in refused.items():
        assert httpx.post(f"{server_url}/retrieve", json=payload, timeout=60).status_code == 422, bound
    pages = httpx.post(f"{server_url}/access", json={"ids": ["doc"] * (MAX_QUERIES_PER_REQUEST + 1)})
    assert pages.status_code == 422
    at_the_bounds = {"queries": ["alder", "a" * MAX_QUERY_CHARS], "topk": MAX_TOPK, "return_scores": False}
    answer = httpx.post(f"{server_url}/retrieve", json=at_the_bounds, timeout=60)
    assert answer.status_code == 200 and len(answer.json()["result"]) == 2


def test_the_query_caches_stay_bounded(index_ref, server_url):
    from tasks.search.tools import SearchTool

    small, fresh = SearchTool(index_ref.uri, cache_size=50), SearchTool(index_ref.uri)
    queries = [f"person number {i} born in city {i % 17}" for i in range(300)]
    for start in range(0, 300, 60):  # each call holds more distinct queries than the cache
        batch = queries[start : start + 60]
        assert small.retrieve(batch, k=2) == fresh.retrieve(batch, k=2)
        assert len(small._cache) == 50
    assert small.retrieve(queries[-3:], k=2) == fresh.retrieve(queries[-3:], k=2)  # hits, still right

    remote = RemoteSearchTool(server_url, batch_size=32, cache_size=20)
    assert remote.search(queries[:100], k=2) == fresh.search(queries[:100], k=2)
    assert len(remote._cache) == 20


def test_a_retriever_url_with_credentials_is_refused_and_a_token_comes_from_the_environment(monkeypatch):
    from tasks.search.client import RETRIEVER_TOKEN_ENV, check_retriever_url

    for url in ("http://user:hunter2@retriever:8000", "http://retriever/?api_key=hunter2"):
        with pytest.raises(ValueError, match=RETRIEVER_TOKEN_ENV) as refused:
            RemoteSearchTool(url)
        assert "hunter2" not in str(refused.value) and "***" in str(refused.value)
    assert check_retriever_url("http://retriever:8000/?index=wiki") == "http://retriever:8000/?index=wiki"

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"result": [[]]})

    monkeypatch.setenv(RETRIEVER_TOKEN_ENV, "hunter2")
    remote = RemoteSearchTool("http://retriever", client=httpx.Client(transport=httpx.MockTransport(answer)))
    assert remote.search(["alder"], k=1) == [[]] and seen == ["Bearer hunter2"]


# --- Search-R1's own server shape ----------------------------------------------------------------


def test_the_server_takes_search_r1s_defaults(server_url, world_ref):
    """No scores unless asked, and a missing or null topk is the server's default (3)."""
    people = [f"{e.name} works for" for e in read_rows(world_ref, Entity, "entities") if e.type == "person"][
        :2
    ]
    for payload in ({"queries": people}, {"queries": people, "topk": None}):
        result = httpx.post(f"{server_url}/retrieve", json=payload).json()["result"]
        assert [len(hits) for hits in result] == [3, 3]
        assert all(set(hit) == {"id", "contents"} for hits in result for hit in hits)
    scored = httpx.post(f"{server_url}/retrieve", json={"queries": people, "return_scores": True}).json()
    assert set(scored["result"][0][0]) == {"document", "score"}


PASSAGES = [
    ("Orvell Lighthouse", "Orvell Lighthouse stands on the cape of Marrow Bay."),
    ("Marrow Bay", "Marrow Bay is a harbour town whose keeper is Tessin Pruel."),
    ("Quillon Mill", "Quillon Mill grinds grain for the villages of the uplands."),
]


class QueryRequest(BaseModel):
    """Search-R1's request model, field for field."""

    queries: list[str]
    topk: int | None = None
    return_scores: bool = False


def search_r1_server(shape: str) -> FastAPI:
    """A retriever written to Search-R1's retrieval_server.py: its request model, its answer shapes.

    ``bm25`` documents are {title, text, contents} with no id (its pyserini BM25 path); ``dense``
    documents are the corpus rows {id, contents} (its faiss path). There is no /access.
    """

    def document(i: int) -> dict:
        title, text = PASSAGES[i]
        contents = f'"{title}"\n{text}'
        if shape == "bm25":
            return {"title": title, "text": text, "contents": contents}
        return {"id": str(i), "contents": contents}

    app = FastAPI()

    @app.post("/retrieve")
    def retrieve_endpoint(request: QueryRequest) -> dict:
        topk = request.topk or 3
        resp = []
        for query in request.queries:
            words = set(query.lower().split())
            overlap = [len(words & set(f"{t} {x}".lower().replace(".", "").split())) for t, x in PASSAGES]
            ranked = sorted(range(len(PASSAGES)), key=lambda i: -overlap[i])[:topk]
            if request.return_scores:
                resp.append([{"document": document(i), "score": float(overlap[i])} for i in ranked])
            else:
                resp.append([document(i) for i in ranked])
        return {"result": resp}

    return app


@pytest.mark.parametrize("shape", ["bm25", "dense"])
def test_remote_tool_searches_and_opens_through_a_search_r1_server(shape):
    from tasks.agent.environment import ToolConfig, execute_turns
    from tasks.search.client import PageNotOpenable
    from tasks.turns import parse_turn

    with running(search_r1_server(shape)) as url:
        remote = RemoteSearchTool(url)
        (hits,) = remote.search(["keeper of marrow bay harbour"], k=2)
        assert [h.title for h in hits] == ["Marrow Bay", "Orvell Lighthouse"]
        assert hits[0].snippet == PASSAGES[1][1] and hits[0].score > 0
        if shape == "dense":
            assert [h.doc_id for h in hits] == ["1", "0"]  # the server's own ids
        else:  # none given: a digest of the contents, the same from a fresh client
            (again,) = RemoteSearchTool(url).search(["keeper of marrow bay harbour"], k=2)
            assert [h.doc_id for h in again] == [h.doc_id for h in hits]
            assert len({h.doc_id for h in hits}) == 2
        # open serves what search returned, in the local tool's page format
        assert remote.open(hits[0].doc_id) == "Marrow Bay\n" + PASSAGES[1][1]
        # a page search never returned cannot be opened from such a server: said, not a failure
        with pytest.raises(PageNotOpenable, match="cannot open pages"):
            remote.open("2" if shape == "dense" else "sha-0000000000000000")
        (observation,) = execute_turns(remote, [parse_turn("<open>no-such-page</open>")], ToolConfig())
        assert "cannot open pages" in observation.text and not observation.fatal
