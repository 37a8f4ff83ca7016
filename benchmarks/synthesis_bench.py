"""Synthesis benchmark: N verified tasks of a target mix from a synthetic world, checked from outside.

Builds a world sized for N tasks and its bm25s index, then times the synthesis stage's work
(sampling, bucketing, the verifier cascade with the oracle through the real tools) and checks the
result independently of the synthesiser:

- ``uniqueness_violations``: tasks whose constraints another assignment also satisfies, by brute
  force over the world (every entity of the right type tried for each unknown, facts looked up in
  the set of all triples; no index the synthesiser uses), reading the constraints from the task
  rows alone (an attribute is a constraint when the question states its value);
- ``oracle_solved``: the share of tasks a fresh oracle solves through a fresh search tool;
- ``target_vs_achieved`` per bucket, and ``hard_share`` (k >= 2, MSD >= 3 or 4+ hops).

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.schemas import Task  # noqa: E402
from storage.store import write_table  # noqa: E402
from tasks.agent.environment import ToolConfig  # noqa: E402
from tasks.agent.oracle import oracle_trajectory  # noqa: E402
from tasks.corpus.world import ATTRIBUTES, WorldConfig, generate_world  # noqa: E402
from tasks.search.index import IndexConfig, build_index  # noqa: E402
from tasks.search.tools import SearchTool  # noqa: E402
from tasks.synthesis.difficulty import Bucket  # noqa: E402
from tasks.synthesis.stage import DEFAULT_MIX, SynthesisConfig, synthesize_report  # noqa: E402


def brute_force_answers(task: Task, entities: dict, triples: set, limit: int = 2) -> set[tuple]:
    """Distinct (answer, looked-up owners) over every assignment satisfying the task's constraints."""
    named = set(task.named)
    facts, lookups = [], []
    for hop in task.hops:
        if hop.relation in ATTRIBUTES and hop.object not in task.question:
            lookups.append(hop)
        else:
            facts.append(hop)
    nodes = list(
        dict.fromkeys(
            n for h in task.hops for n in (h.subject, h.object if h.relation not in ATTRIBUTES else None) if n
        )
    )
    unknown = [n for n in nodes if n not in named]
    # solve order: each next unknown linked to something already placed
    order, placed = [], set(named)
    while len(order) < len(unknown):
        nxt = next(
            (
                n
                for n in unknown
                if n not in placed
                and any(
                    (h.subject == n and (h.object in placed or h.relation in ATTRIBUTES))
                    or (h.object == n and h.subject in placed)
                    for h in facts
                )
            ),
            next(n for n in unknown if n not in placed),
        )
        order.append(nxt)
        placed.add(nxt)
    by_type = defaultdict(list)
    for e in entities.values():
        by_type[e.type].append(e.id)
    project = ([task.answer_entity] if task.answer_entity else []) + [h.subject for h in lookups]
    found: set[tuple] = set()
    value = {n: n for n in named}

    def satisfied(node: str) -> bool:
        for h in facts:
            if h.relation in ATTRIBUTES:
                if h.subject == node and entities[value[node]].attributes.get(h.relation) != h.object:
                    return False
            elif node in (h.subject, h.object) and h.subject in value and h.object in value:
                if (value[h.subject], h.relation, value[h.object]) not in triples:
                    return False
        return True

    def place(i: int) -> bool:
        if i == len(order):
            found.add(tuple(value[n] for n in dict.fromkeys(project)))
            return len(found) >= limit
        node = order[i]
        used = set(value.values())
        for candidate in by_type[entities[node].type]:
            if candidate in used:
                continue
            value[node] = candidate
            if satisfied(node) and place(i + 1):
                return True
            del value[node]
        return False

    place(0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="accepted tasks (a fifth held out)")
    parser.add_argument("--docs-per-task", type=float, default=6.0, help="world pages per task asked for")
    parser.add_argument("--spread", type=float, default=0.1)
    parser.add_argument("--mirror", type=float, default=0.2)
    parser.add_argument("--distractors", type=float, default=0.1)
    parser.add_argument("--mix", default=None, help="bucket=share,... (default: the pipeline's default mix)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    world_config = WorldConfig.for_documents(int(args.tasks * args.docs_per_task), seed=args.seed).model_copy(
        update={"spread": args.spread, "mirror": args.mirror, "distractors": args.distractors}
    )
    world = generate_world(world_config)
    eval_tasks = args.tasks // 5
    config = SynthesisConfig(
        seed=args.seed,
        train_tasks=args.tasks - eval_tasks,
        eval_tasks=eval_tasks,
        mix=args.mix or dict(DEFAULT_MIX),
    )
    with tempfile.TemporaryDirectory() as tmp:
        corpus, index_dir = Path(tmp) / "corpus", Path(tmp) / "index"
        corpus.mkdir()
        index_dir.mkdir()
        write_table(corpus, world.documents)
        build_index(corpus, IndexConfig(), index_dir)
        setup_s = time.perf_counter() - started

        tool = SearchTool(index_dir)
        tools = ToolConfig(top_k=config.evidence_top_k)
        began = time.perf_counter()
        result = synthesize_report(
            world.entities,
            world.triples,
            config,
            tool.search,
            solve=lambda task: oracle_trajectory(task, tool, tools)[1],
            documents=world.documents,
        )
        seconds = time.perf_counter() - began

        fresh = SearchTool(index_dir)
        solved = sum(oracle_trajectory(t, fresh, tools)[1] for t in result.tasks)

    checked = time.perf_counter()
    entities = {e.id: e for e in world.entities}
    triples = {(t.subject, t.relation, t.object) for t in world.triples}
    violations = sum(len(brute_force_answers(t, entities, triples)) != 1 for t in result.tasks)
    check_s = time.perf_counter() - checked

    tasks = result.tasks
    achieved = Counter(t.bucket for t in tasks)
    print(
        json.dumps(
            {
                "world_pages": len(world.documents),
                "setup_seconds": round(setup_s, 2),
                "check_seconds": round(check_s, 2),
                "seconds": round(seconds, 2),
                "accepted": len(tasks),
                "train": sum(t.split == "train" for t in tasks),
                "eval": sum(t.split == "eval" for t in tasks),
                "rejected_by_stage": result.rejected_by_stage,
                "target_vs_achieved": {
                    b: {"target": round(share, 4), "achieved": round(achieved[b] / len(tasks), 4)}
                    for b, share in sorted(config.mix.items())
                },
                "uniqueness_violations": violations,
                "oracle_solved": round(solved / len(tasks), 4),
                "hard_share": round(sum(Bucket.parse(t.bucket).hard for t in tasks) / len(tasks), 4),
                "inexact_msd": sum(not t.msd_exact for t in tasks),
                "inexact_treewidth": sum(not t.treewidth_exact for t in tasks),
            }
        )
    )


if __name__ == "__main__":
    main()
