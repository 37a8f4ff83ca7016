"""An httpx client for any Search-R1-compatible retriever server, usable as the agent's search tool.

It speaks the ``/retrieve`` shape (``{queries, topk, return_scores}``) and Trailforge's ``/access``,
sends a turn's queries in batches, and retries transport errors, timeouts, 429 and 5xx with
exponential backoff and jitter; other errors (a 4xx means the request itself is wrong) fail at once.
Snippets are cut client-side with the same query-biased rule as the local tool, so observations look
the same whichever retriever answers.
"""

from __future__ import annotations

import time

import httpx

from tasks.retry import RETRYABLE_STATUS, backoff_delay
from tasks.search.server import split_contents
from tasks.search.tools import Hit, open_page, query_biased_snippet, query_terms


class RetrieverError(RuntimeError):
    pass


class RemoteSearchTool:
    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 256,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        snippet_chars: int = 240,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.snippet_chars = snippet_chars
        self.client = client or httpx.Client(timeout=timeout_s)
        self._cache: dict[tuple[str, int], list[tuple[str, str, str, float]]] = {}

    def _post(self, path: str, payload: dict) -> dict:
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post(f"{self.url}{path}", json=payload)
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
        todo = sorted({q for q in queries if (q, k) not in self._cache})
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            result = self._post("/retrieve", {"queries": batch, "topk": k, "return_scores": True})["result"]
            if len(result) != len(batch):
                raise RetrieverError(
                    f"{self.url}/retrieve answered {len(result)} lists for {len(batch)} queries"
                )
            for query, hits in zip(batch, result, strict=True):
                self._cache[(query, k)] = [
                    (
                        h["document"]["id"],
                        *split_contents(h["document"]["contents"]),
                        float(h.get("score", 0.0)),
                    )
                    for h in hits
                ]
        return [self._cache[(q, k)] for q in queries]

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
        page = self._post("/access", {"ids": [doc_id.strip()]})["result"][0]
        return None if page is None else split_contents(page["contents"])

    def open(self, doc_id: str) -> str | None:
        return open_page(self.document, doc_id)
