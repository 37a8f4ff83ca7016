"""Search benchmark: index a synthetic world of N documents, then search it raw and through the tool.

``qps_raw`` is bm25s alone (tokenise + batched retrieve); ``qps_tool`` is Trailforge's search tool
on the same queries with an empty cache (the same retrieval plus vocabulary filtering and
query-biased snippets). The queries are the hop queries of synthesised two-hop tasks, the ones the
oracle issues, and ``recall_at_5`` is the share whose gold evidence page is in the top 5.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bm25s  # noqa: E402

from storage.store import write_table  # noqa: E402
from tasks.agent.oracle import hop_query  # noqa: E402
from tasks.corpus.world import WorldConfig, generate_world  # noqa: E402
from tasks.search.index import IndexConfig, build_index  # noqa: E402
from tasks.search.tools import SearchTool  # noqa: E402
from tasks.synthesis.stage import SynthesisConfig, synthesize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument(
        "--tasks", type=int, default=1000, help="two-hop tasks whose hop queries are searched"
    )
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spread", type=float, default=0.0, help="world.spread: facts on related pages")
    parser.add_argument("--distractors", type=float, default=0.0, help="world.distractors: near-miss twins")
    parser.add_argument(
        "--world-only", action="store_true", help="generate and write the world only (scale and memory check)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    config = WorldConfig.for_documents(args.docs).model_copy(
        update={"spread": args.spread, "distractors": args.distractors}
    )
    world = generate_world(config)
    world_s = time.perf_counter() - started
    if args.world_only:
        with tempfile.TemporaryDirectory() as tmp:
            write_table(Path(tmp), world.documents)
            write_s = time.perf_counter() - started - world_s
        print(
            json.dumps(
                {
                    "docs": len(world.documents),
                    "triples": len(world.triples),
                    "world_s": round(world_s, 2),
                    "write_s": round(write_s, 2),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            )
        )
        return
    tasks = synthesize(
        world.entities,
        world.triples,
        SynthesisConfig(train_tasks=args.tasks - args.tasks // 4, eval_tasks=args.tasks // 4),
    )
    queries = [hop_query(hop) for task in tasks for hop in task.hops]
    gold = [hop.doc_id for task in tasks for hop in task.hops]

    with tempfile.TemporaryDirectory() as tmp:
        corpus_dir, index_dir = Path(tmp, "corpus"), Path(tmp, "index")
        corpus_dir.mkdir()
        index_dir.mkdir()
        write_table(corpus_dir, world.documents)
        started = time.perf_counter()
        build_index(corpus_dir, IndexConfig(), index_dir)
        index_s = time.perf_counter() - started

        tool = SearchTool(index_dir)
        tool.search(queries[:50], k=args.k)  # warm-up: first-call costs of bm25s and numpy
        raw_s = tool_s = float("inf")
        for _ in range(args.repeats):  # best of n, alternating, so neither side gets a warmer cache
            started = time.perf_counter()
            tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
            known = [[t for t in q if t in tool.vocab] for q in tokens]
            tool.retriever.retrieve(known, k=args.k, show_progress=False, n_threads=1)
            raw_s = min(raw_s, time.perf_counter() - started)

            tool.clear_cache()
            started = time.perf_counter()
            results = tool.search(queries, k=args.k)
            tool_s = min(tool_s, time.perf_counter() - started)

    recall = sum(g in {h.doc_id for h in hits} for g, hits in zip(gold, results, strict=True)) / len(gold)
    print(
        json.dumps(
            {
                "docs": len(world.documents),
                "spread": args.spread,
                "distractors": args.distractors,
                "queries": len(queries),
                "world_s": round(world_s, 2),
                "index_s": round(index_s, 2),
                "qps_raw": round(len(queries) / raw_s, 1),
                "qps_tool": round(len(queries) / tool_s, 1),
                "tool_to_raw": round(raw_s / tool_s, 3),
                "recall_at_5": round(recall, 4),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    main()
