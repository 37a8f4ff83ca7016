"""The agent's tools over a local index: ``search``, ``open`` and ``calculate``.

Search is batched: the agent loop gathers every active trajectory's query for a turn and makes one
call, which is what keeps a bm25s index near its raw throughput.
"""

from __future__ import annotations

import ast
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Generic, Literal, TypeVar

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from storage import ArtifactRef
from storage.store import read_table
from tasks.search.index import DENSE_FILE

Retrieval = Literal["bm25", "dense", "hybrid"]


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    snippet: str
    score: float


TOOLS_SCHEMA = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the document collection; returns ranked snippets with document ids.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "open",
            "description": "Read a document by its id; long ones come in pages ('doc_id page 2').",
            "parameters": {
                "type": "object",
                "properties": {"doc_id": {"type": "string"}},
                "required": ["doc_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Evaluate arithmetic (+ - * / ** % and parentheses); ISO dates count as day numbers.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
]


KeyT = TypeVar("KeyT", bound=Hashable)
ValueT = TypeVar("ValueT")

# Results kept per search tool: the repeats worth catching (K samples of one task asking the same
# question, evaluation after collection) are recent; a retriever server must not grow without end.
QUERY_CACHE_SIZE = 65_536


class LRUCache(Generic[KeyT, ValueT]):
    """A mapping that forgets its least recently used entries past ``max_entries``.

    Thread-safe: one tool serves a thread pool's shards and a server's concurrent requests.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[KeyT, ValueT] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: KeyT) -> ValueT | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: KeyT, value: ValueT) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class SearchTool:
    """bm25s search plus page access over one index artifact."""

    def __init__(
        self,
        index_dir: str | Path,
        snippet_chars: int = 240,
        retrieval: Retrieval = "bm25",
        cache_size: int = QUERY_CACHE_SIZE,
    ) -> None:
        index_dir = Path(index_dir)
        self.retrieval = retrieval
        self.vectors = None
        if retrieval != "bm25":
            if not (index_dir / DENSE_FILE).exists():
                raise ValueError(f"{retrieval} retrieval needs an index built with dense=True ({index_dir})")
            self.vectors = np.load(index_dir / DENSE_FILE)
        self.retriever = bm25s.BM25.load(index_dir / "bm25", show_progress=False)
        table = read_table(index_dir)
        self.ids: list[str] = table.column("id").to_pylist()
        self.titles: list[str] = table.column("title").to_pylist()
        self.texts: list[str] = table.column("text").to_pylist()
        self.position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self.vocab = self.retriever.vocab_dict
        self.snippet_chars = snippet_chars
        self._cache: LRUCache[tuple[str, int], list[tuple[int, float]]] = LRUCache(cache_size)

    def retrieve(self, queries: list[str], k: int = 3) -> list[list[tuple[int, float]]]:
        """(document position, score) of the top-k for each query, in one batched bm25s call.

        Results are cached per (query, k); the tool belongs to one index, so that is the
        (index id, query, k) key. Queries with no indexed word match nothing.
        """
        k = min(k, len(self.ids))
        found: dict[str, list[tuple[int, float]]] = {}
        for query in queries:
            cached = self._cache.get((query, k))
            if cached is not None:
                found[query] = cached
        todo = sorted(set(queries) - found.keys())
        if todo and self.retrieval != "bm25":
            from tasks.search.dense import dense_top_k, load_encoder, reciprocal_rank_fusion

            depth = k if self.retrieval == "dense" else max(k * 5, 50)
            dense = dense_top_k(self.vectors, load_encoder().encode(todo), depth)
            lexical = self._bm25(todo, depth) if self.retrieval == "hybrid" else None
            for i, query in enumerate(todo):
                ranked = (
                    dense[i] if lexical is None else reciprocal_rank_fusion([lexical[i], dense[i]], depth)
                )
                found[query] = ranked[:k]
        elif todo:
            found.update(zip(todo, self._bm25(todo, k), strict=True))
        for query in todo:
            self._cache.put((query, k), found[query])
        return [found[q] for q in queries]

    def _bm25(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        """One batched bm25s call; a query with no indexed word matches nothing."""
        results: list[list[tuple[int, float]]] = [[] for _ in queries]
        if queries:
            tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
            known = [[t for t in query if t in self.vocab] for query in tokens]
            searchable = [i for i, t in enumerate(known) if t]
            if searchable:
                docs, scores = self.retriever.retrieve(
                    [known[i] for i in searchable], k=k, show_progress=False, n_threads=1
                )
                for row, i in enumerate(searchable):
                    results[i] = [
                        (int(d), float(s)) for d, s in zip(docs[row], scores[row], strict=True) if s > 0
                    ]
        return results

    def clear_cache(self) -> None:
        self._cache.clear()

    def search(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        """Top-k hits with query-biased snippets for each query (see :meth:`retrieve`)."""
        results = []
        for query, ranked in zip(queries, self.retrieve(queries, k), strict=True):
            terms = query_terms(query)
            results.append([self._hit(position, score, terms) for position, score in ranked])
        return results

    def search_documents(self, queries: list[str], k: int = 3) -> list[list[tuple[str, str, str, float]]]:
        """(id, title, text, score) of whole documents, as a retriever server returns them."""
        return [
            [(self.ids[p], self.titles[p], self.texts[p], score) for p, score in ranked]
            for ranked in self.retrieve(queries, k)
        ]

    def _hit(self, position: int, score: float, terms: set[str]) -> Hit:
        return Hit(
            doc_id=self.ids[position],
            title=self.titles[position],
            snippet=query_biased_snippet(self.texts[position], terms, self.snippet_chars),
            score=score,
        )

    def document(self, doc_id: str) -> tuple[str, str] | None:
        position = self.position.get(doc_id.strip())
        return None if position is None else (self.titles[position], self.texts[position])

    def open(self, doc_id: str) -> str | None:
        return open_page(self.document, doc_id)


PAGE_CHARS = 2000
_PAGE_SUFFIX = re.compile(r"\s*(?:#|\bpage\s*)(\d+)\s*$", re.I)


def split_page_argument(argument: str) -> tuple[str, int]:
    match = _PAGE_SUFFIX.search(argument)
    if match is None:
        return argument.strip(), 1
    return argument[: match.start()].strip(), int(match.group(1))


def open_page(document, argument: str, page_chars: int = PAGE_CHARS) -> str | None:
    """``doc_id`` or ``doc_id page N`` (or ``doc_id#N``): one page of a document, with its position.

    Long documents are paged so one ``open`` cannot flood the context; the header says which page
    this is and how many there are, so the agent can ask for the next.
    """
    doc_id, page = split_page_argument(argument)
    found = document(doc_id)
    if found is None:
        return None
    title, text = found
    pages = max(1, -(-len(text) // page_chars))
    if len(text) <= page_chars:
        return f"{title}\n{text}"
    page = min(max(page, 1), pages)
    body = text[(page - 1) * page_chars : page * page_chars]
    return (
        f"{title} (page {page} of {pages}; open '{doc_id} page {page + 1}' for more)\n{body}"
        if page < pages
        else f"{title} (page {page} of {pages})\n{body}"
    )


@lru_cache(maxsize=4)
def load_search_tool(index_uri: str, retrieval: Retrieval = "bm25") -> SearchTool:
    return SearchTool(index_uri, retrieval=retrieval)


def search_tool_for(index: ArtifactRef, retrieval: Retrieval = "bm25") -> SearchTool:
    return load_search_tool(index.uri, retrieval)


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s's token pattern


def query_terms(query: str) -> set[str]:
    """The words of a query that can pick a snippet sentence: bm25s's tokens minus its stopwords."""
    return set(_WORD.findall(query.lower())) - set(STOPWORDS_EN)


def query_biased_snippet(text: str, terms: set[str], max_chars: int) -> str:
    """The sentences that share most words with the query, in document order, up to max_chars.

    A fixed-length prefix would hide the fact a hop needs whenever a page is longer than the
    snippet; picking the query's sentences is what web search engines show, too.
    """
    if len(text) <= max_chars:
        return text
    sentences = _SENTENCE.split(text)
    overlap = [len(terms & set(_WORD.findall(sentence.lower()))) for sentence in sentences]
    chosen, used = set(), 0
    for i in sorted(range(len(sentences)), key=lambda i: (-overlap[i], i)):
        if used + len(sentences[i]) + 1 > max_chars and chosen:
            continue
        chosen.add(i)
        used += len(sentences[i]) + 1
    parts = []
    for i in sorted(chosen):
        if parts and i - 1 not in chosen:
            parts.append("...")
        parts.append(sentences[i] if len(sentences[i]) <= max_chars else sentences[i][:max_chars] + " ...")
    return " ".join(parts)


# --- calculate: a safe arithmetic evaluator (never eval) ----------------------------------------

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculationError(ValueError):
    pass


MAX_RESULT_BITS = 1024  # about 308 decimal digits, the float range


_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def _date_as_day_number(match: re.Match) -> str:
    try:
        return str(date(int(match.group(1)), int(match.group(2)), int(match.group(3))).toordinal())
    except ValueError as exc:
        raise CalculationError(f"not a valid date: {match.group(0)}") from exc


def calculate(expression: str) -> float | int:
    """Evaluate + - * / // % ** on numbers; anything else (names, calls) is refused.

    ISO dates (2024-03-01) count as day numbers, so the difference of two dates is in days.
    """
    try:
        tree = ast.parse(_ISO_DATE.sub(_date_as_day_number, expression.replace(",", "").strip()), mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"not an arithmetic expression: {expression!r}") from exc

    def walk(node: ast.AST) -> float | int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise CalculationError("exponent too large")
            try:
                value = _BINARY[type(node.op)](left, right)
            except ZeroDivisionError as exc:
                raise CalculationError("division by zero") from exc
            except OverflowError as exc:
                raise CalculationError("result too large") from exc
            # Nested powers of large ints grow without bound (a memory and time sink), and floats
            # past the range become inf: both are refused, as a calculator would.
            too_large = (
                value.bit_length() > MAX_RESULT_BITS if isinstance(value, int) else not np.isfinite(value)
            )
            if too_large:
                raise CalculationError("result too large")
            return value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        raise CalculationError(f"unsupported element in expression: {ast.dump(node)[:40]}")

    result = walk(tree)
    if isinstance(result, float) and np.isfinite(result) and result.is_integer():
        return int(result)
    return result
