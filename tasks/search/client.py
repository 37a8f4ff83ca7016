"""An httpx client for any Search-R1-compatible retriever server, usable as the agent's search tool.

It speaks the ``/retrieve`` shape (``{queries, topk, return_scores}``) and Trailforge's ``/access``,
sends a turn's queries in batches, and retries transport errors, timeouts, 429 and 5xx with
exponential backoff and jitter; other errors (a 4xx means the request itself is wrong) fail at once.
Snippets are cut client-side with the same query-biased rule as the local tool, so observations look
the same whichever retriever answers.

A retriever URL is part of a config, and configs are logged and stored (``_meta.json``, the catalog,
the Prefect UI), so a URL carrying credentials is refused: a token goes in
``TRAILFORGE_RETRIEVER_TOKEN`` instead and is sent as a bearer token.
"""

from __future__ import annotations

import os
import time

import httpx

from tasks.credentials import refuse_credentials
from tasks.retry import RETRYABLE_STATUS, backoff_delay
from tasks.search.server import (
    MAX_HITS_PER_REQUEST,
    MAX_QUERIES_PER_REQUEST,
    MAX_QUERY_CHARS,
    split_contents,
)
from tasks.search.tools import (
    QUERY_CACHE_SIZE,
    Hit,
    LRUCache,
    open_page,
    query_biased_snippet,
    query_terms,
)

RETRIEVER_TOKEN_ENV = "TRAILFORGE_RETRIEVER_TOKEN"


def check_retriever_url(url: str) -> str:
    """For config validators: a retriever URL without credentials (see :func:`refuse_credentials`)."""
    return refuse_credentials(url, f"set {RETRIEVER_TOKEN_ENV} instead (sent as a bearer token)")


class RetrieverError(RuntimeError):
    pass


class RemoteSearchTool:
    """A retriever server as the agent's search tool.

    Requests stay within the server's bounds: at most ``batch_size`` queries each, and a query
    longer than the server takes is searched by its first ``MAX_QUERY_CHARS`` characters.
    """

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 256,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        snippet_chars: int = 240,
        cache_size: int = QUERY_CACHE_SIZE,
        client: httpx.Client | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_QUERIES_PER_REQUEST:
            raise ValueError(f"batch_size must be 1 to {MAX_QUERIES_PER_REQUEST}, got {batch_size}")
        self.url = check_retriever_url(url).rstrip("/")
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.snippet_chars = snippet_chars
        self.client = client or httpx.Client(timeout=timeout_s)
        token = os.environ.get(RETRIEVER_TOKEN_ENV)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._cache: LRUCache[tuple[str, int], list[tuple[str, str, str, float]]] = LRUCache(cache_size)

    def _post(self, path: str, payload: dict) -> dict:
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post(f"{self.url}{path}", json=payload, headers=self._headers)
                if response.status_code not in RETRYABLE_STATUS:
                    response.raise_for_status()
                    return response.json()
                problem = f"HTTP {response.status_code}"
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_retries:
                time.sleep(backoff_delay(attempt, self.backoff_s))
        raise RetrieverError(f"{self.url}{path} failed after {self.max_retries + 1} attempts ({problem})")

    def search_documents(self, queries: list[str], k: int = 3) -> list[list[tuple[str, str, str, float]]]:
        found: dict[str, list[tuple[str, str, str, float]]] = {}
        for query in queries:
            cached = self._cache.get((query, k))
            if cached is not None:
                found[query] = cached
        todo = sorted(set(queries) - found.keys())
        size = min(self.batch_size, max(1, MAX_HITS_PER_REQUEST // max(k, 1)))
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            result = self._post(
                "/retrieve",
                {"queries": [q[:MAX_QUERY_CHARS] for q in batch], "topk": k, "return_scores": True},
            )["result"]
            if len(result) != len(batch):
                raise RetrieverError(
                    f"{self.url}/retrieve answered {len(result)} lists for {len(batch)} queries"
                )
            for query, hits in zip(batch, result, strict=True):
                found[query] = [
                    (
                        h["document"]["id"],
                        *split_contents(h["document"]["contents"]),
                        float(h.get("score", 0.0)),
                    )
                    for h in hits
                ]
                self._cache.put((query, k), found[query])
        return [found[q] for q in queries]

    def search(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        results = []
        for query, documents in zip(queries, self.search_documents(queries, k), strict=True):
            terms = query_terms(query)
            results.append(
                [
                    Hit(
                        doc_id=d, title=t, snippet=query_biased_snippet(x, terms, self.snippet_chars), score=s
                    )
                    for d, t, x, s in documents
                ]
            )
        return results

    def document(self, doc_id: str) -> tuple[str, str] | None:
        page = self._post("/access", {"ids": [doc_id.strip()[:MAX_QUERY_CHARS]]})["result"][0]
        return None if page is None else split_contents(page["contents"])

    def open(self, doc_id: str) -> str | None:
        return open_page(self.document, doc_id)
