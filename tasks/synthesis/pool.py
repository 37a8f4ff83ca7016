"""A grown training pool: more training tasks for the rounds, with the held-out split left as it is.

Rounds learn from tasks the cold start never saw a demonstration of; a larger pool of such tasks is
more for them to learn from, and more the control arm (trained on demonstrations alone) cannot use.
Growing ``synthesis.train_tasks`` would refill both splits in step and so change the held-out tasks,
the cold start and every evaluation. This stage instead continues down the same candidate stream
after the synthesis stage stopped: each bucket takes its share of ``tasks`` more training tasks,
through the same verifier cascade, passing over every candidate that shares an entity, an answer or
a gold fact with the held-out split (the rule the two splits are filled by) or that is already a
task. The artifact holds the original tasks, both splits, and the new training tasks after them, so
it is a task set like any other; evaluation keeps reading the original one.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Document, Entity, RejectedTask, SynthesisBucket, Task, Triple
from storage.store import read_rows, write_table
from tasks.agent.environment import ToolConfig
from tasks.agent.oracle import oracle_trajectory
from tasks.search.tools import search_tool_for
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.difficulty import Bucket
from tasks.synthesis.evidence import load_tasks
from tasks.synthesis.graph import KnowledgeGraph
from tasks.synthesis.questions import paraphrase_questions
from tasks.synthesis.stage import (
    Cascade,
    HeldOut,
    SynthesisConfig,
    allocate,
    candidate_pool,
    paraphrased,
)
from tasks.synthesis.verify import no_tool_answers


class PoolExtensionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: int = Field(ge=1, le=1_000_000, description="Training tasks to add, shared out by the mix.")


def extend_pool(
    entities: list[Entity],
    triples: list[Triple],
    config: SynthesisConfig,
    existing: list[Task],
    extra: int,
    search=None,
    *,
    solve=None,
    documents: list[Document] | None = None,
    no_tool=None,
    paraphrase=None,
) -> tuple[list[Task], list[RejectedTask], list[SynthesisBucket]]:
    """``extra`` new training tasks under ``config`` (the synthesis that made ``existing``), the
    candidates rejected on the way, and the per-bucket report of the new tasks.

    Fails, naming the buckets, when the world has too few candidates left for the share asked.
    """
    graph = KnowledgeGraph(entities, triples)
    candidates = candidate_pool(graph, config)
    texts = None if documents is None else {d.id: d.text for d in documents}
    cascade = Cascade(graph, config, search, solve, texts, no_tool)
    held_out = HeldOut([t for t in existing if t.split == "eval"])
    taken = {t.id for t in existing}

    def passed_over(task: Task) -> bool:
        return task.id in taken or held_out(task)

    wanted = allocate(extra, config.mix)
    added: dict[str, list[Task]] = {
        bucket: cascade.fill(candidates.get(bucket, []), wanted[bucket], "train", passed_over)
        for bucket in sorted(config.mix)
    }
    short = [f"{b}: {len(added[b])}/{wanted[b]}" for b in sorted(config.mix) if len(added[b]) < wanted[b]]
    if short:
        raise ValueError(
            f"the world has too few tasks left that share nothing with the held-out split ({'; '.join(short)}"
            "): grow the world or add fewer tasks"
        )
    tasks = [t for bucket in sorted(config.mix) for t in added[bucket]]
    if paraphrase is not None:
        tasks = paraphrased(tasks, paraphrase, graph)
    report = [
        SynthesisBucket(
            bucket=b,
            hard=Bucket.parse(b).hard,
            target_share=round(config.mix[b], 4),
            achieved_share=round(len(added[b]) / len(tasks), 4),
            train=len(added[b]),
            eval=0,
            candidates=len(candidates.get(b, [])),
        )
        for b in sorted(config.mix)
    ]
    return tasks, cascade.rejected, report


def produce_pool(work: Path, config: PoolExtensionConfig, inputs: Inputs, store: ArtifactStore) -> None:
    base = inputs["tasks"]
    if base.stage != "synthesize":
        raise ValueError(
            f"tasks {base.id} come from {base.stage!r}; only a synthetic world's task set can be grown"
        )
    synthesis = SynthesisConfig.model_validate(store.meta(base)["config"])
    world = inputs["world"]
    tool = search_tool_for(inputs["index"])
    tools = ToolConfig(top_k=synthesis.evidence_top_k)
    existing = load_tasks(base)
    added, rejected, report = extend_pool(
        read_rows(world, Entity, "entities"),
        read_rows(world, Triple, "triples"),
        synthesis,
        existing,
        config.tasks,
        tool.search,
        solve=lambda task: oracle_trajectory(task, tool, tools)[1],
        documents=read_rows(world, Document),
        no_tool=(lambda qs: no_tool_answers(synthesis.no_tool_model, qs))
        if synthesis.no_tool_model
        else None,
        paraphrase=(lambda qs: paraphrase_questions(synthesis.paraphrase, qs))
        if synthesis.paraphrase
        else None,
    )
    write_table(work, existing + added)
    write_table(work, rejected, name="rejected")
    write_table(work, report, name="report")


STAGE = Stage(name="extend-pool", kind="tasks", produce=produce_pool, config_model=PoolExtensionConfig)
