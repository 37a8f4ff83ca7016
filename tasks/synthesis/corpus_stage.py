"""The ``synthesize-corpus`` stage: verified train and held-out tasks from a user's own corpus.

Inputs are a corpus artifact (or any artifact with id, title and text columns) and the index built
from it, so the tasks sit in lineage under both. The target is a share per shape (bridge, chain,
compare, bridge-compare; :mod:`tasks.synthesis.corpus_tasks`). Held-out tasks are filled first,
shape by shape, each candidate through the cascade (:mod:`tasks.synthesis.corpus_verify`, then the
oracle through the real tools, then optionally a model without tools); a shape the corpus cannot
fill is made up from the others, and a corpus too small for the tasks asked fails with what it
yielded. Training tasks share no pair of consecutive evidence pages and no answer with held-out
tasks. Every rejection is kept with its verifier (``rejected``), model-writing failures with their
raw replies (``failures``), and target against achieved per bucket (``report``), as the synthetic
stage does.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage import ArtifactStore
from storage.schemas import Failure, RejectedTask, SynthesisBucket, Task
from storage.store import read_table, write_table
from tasks.agent.environment import ToolConfig
from tasks.agent.oracle import oracle_trajectory
from tasks.llm.engines import check_model_spec, spec_environment
from tasks.rewards.outcome import normalize_answer
from tasks.search.tools import search_tool_for
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.corpus_graph import CorpusGraph
from tasks.synthesis.corpus_tasks import CORPUS_SHAPES, CorpusCandidate, sample_candidates, write_template
from tasks.synthesis.corpus_verify import (
    check_text_consistency,
    check_text_retrievability,
    check_text_uniqueness,
)
from tasks.synthesis.corpus_writer import write_with_model
from tasks.synthesis.difficulty import Bucket, min_source_dispersion, treewidth
from tasks.synthesis.stage import SynthesisConfig, allocate, shares_from_text
from tasks.synthesis.verify import check_no_tool, no_tool_answers, rejection

SHARED_SYNTHESIS = {"seed", "train_tasks", "eval_tasks", "evidence_top_k", "answer_depth", "no_tool_model"}
DEFAULT_CORPUS_MIX = {"bridge": 0.4, "chain": 0.2, "compare": 0.2, "bridge-compare": 0.2}
TEMPLATE = "template"


class CorpusTasksConfig(BaseModel):
    """What is asked of a user corpus: the pipeline's ``corpus_tasks`` section."""

    model_config = ConfigDict(extra="forbid")

    mix: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_CORPUS_MIX),
        description="Target share per question shape: bridge (2 hops), chain (3 hops), compare (two "
        "pages' values and calculate), bridge-compare (3 hops and calculate); on the command line "
        "bridge=0.5,chain=0.5. A shape the corpus cannot fill is made up from the others.",
    )
    writer: str = Field(
        TEMPLATE,
        description="Who writes the questions: 'template' (deterministic, no model) or a model spec "
        "(hf:PATH, vllm:PATH, openai:MODEL@URL); a model's unusable reply keeps the template's question.",
    )
    writer_max_tokens: int = Field(160, ge=16, le=4096, description="Tokens a model may write per question.")

    @field_validator("mix", mode="before")
    @classmethod
    def _mix_from_text(cls, value):
        return shares_from_text(value, "shape=share pairs: bridge=0.5,chain=0.5")

    @field_validator("mix")
    @classmethod
    def _known_shapes(cls, mix: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(mix) - set(CORPUS_SHAPES))
        if unknown:
            raise ValueError(f"unknown shapes {unknown}; choose from {list(CORPUS_SHAPES)}")
        if any(share < 0 for share in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("the mix needs at least one shape with a positive share")
        total = sum(mix.values())
        return {shape: share / total for shape, share in mix.items() if share > 0}

    @field_validator("writer")
    @classmethod
    def _known_writer(cls, writer: str) -> str:
        return writer if writer == TEMPLATE else check_model_spec(writer)


class CorpusSynthesisConfig(CorpusTasksConfig):
    """The stage's whole config: the corpus section plus the synthesis settings it shares with the
    synthetic world (task counts, seed, the agent's top k, the answer depth, the no-tool model)."""

    seed: int = Field(0, description="Seed for sampling and the train/eval split.")
    train_tasks: int = Field(64, ge=1, le=1_000_000)
    eval_tasks: int = Field(12, ge=1, le=100_000)
    evidence_top_k: int = Field(2, ge=1, le=50)
    answer_depth: int = Field(50, ge=1, le=1000)
    no_tool_model: str | None = None

    @field_validator("no_tool_model")
    @classmethod
    def _known_spec(cls, spec: str | None) -> str | None:
        return spec if spec is None else check_model_spec(spec)

    @model_validator(mode="after")
    def _writer_tokens_only_for_models(self) -> CorpusSynthesisConfig:
        if self.writer == TEMPLATE:  # unused: one result, one id
            self.writer_max_tokens = type(self).model_fields["writer_max_tokens"].default
        return self

    def counts(self) -> dict[str, dict[str, int]]:
        return {"eval": allocate(self.eval_tasks, self.mix), "train": allocate(self.train_tasks, self.mix)}

    @classmethod
    def from_sections(
        cls, corpus_tasks: CorpusTasksConfig, synthesis: SynthesisConfig
    ) -> CorpusSynthesisConfig:
        """The stage config of a pipeline run: its corpus section and the synthesis settings shared
        with the synthetic world, so ``--synthesis.train-tasks`` means the same on either."""
        return cls(**corpus_tasks.model_dump(), **synthesis.model_dump(include=SHARED_SYNTHESIS))


# --- the cascade ---------------------------------------------------------------------------------


class Pool:
    """One shape's candidates, drawn lazily; verified ones not needed yet go back to the front."""

    def __init__(self, candidates: Iterator[CorpusCandidate]) -> None:
        self.candidates, self.front, self.drawn = candidates, [], 0

    def take(self, n: int) -> list[CorpusCandidate]:
        taken, self.front = self.front[:n], self.front[n:]
        while len(taken) < n and (candidate := next(self.candidates, None)) is not None:
            self.drawn += 1
            taken.append(candidate)
        return taken

    def give_back(self, candidates: list[CorpusCandidate]) -> None:
        self.front[:0] = candidates


class HeldOutPages:
    """What training tasks must not share with held-out ones: a pair of consecutive evidence pages
    (the bridge a policy could remember) or an answer."""

    def __init__(self, tasks: list[Task]) -> None:
        self.pairs = {p for t in tasks for p in page_pairs(t)}
        self.answers = {normalize_answer(t.answer) for t in tasks}

    def __call__(self, task: Task) -> bool:
        return bool(page_pairs(task) & self.pairs) or normalize_answer(task.answer) in self.answers


def page_pairs(task: Task) -> set[frozenset[str]]:
    docs = [h.doc_id for h in task.hops]
    return {frozenset(pair) for pair in zip(docs, docs[1:], strict=False) if pair[0] != pair[1]}


def corpus_task(graph: CorpusGraph, candidate: CorpusCandidate) -> Task:
    """The written candidate as a Task, with its difficulty measured like the synthetic world's."""
    edges = [
        (h.subject, h.object if h.relation == "mentions" else f"={h.object}@{h.subject}")
        for h in candidate.hops
    ]
    k, k_exact = treewidth(edges)
    msd, msd_exact, _ = min_source_dispersion([[h.doc_id] for h in candidate.hops])
    end = candidate.hops[-1]
    names_answer = not candidate.calculation and end.relation == "mentions"
    return Task(
        id=candidate.key,
        question=candidate.question,
        answer=candidate.answer,
        aliases=candidate.aliases,
        hops=candidate.hops,
        template=f"corpus:{candidate.shape}",
        split="train",
        msd=msd,
        msd_exact=msd_exact,
        treewidth=k,
        treewidth_exact=k_exact,
        bucket=str(Bucket(len(candidate.hops), k, msd)),
        root=candidate.start[0],
        answer_entity=end.object if names_answer else "",
        named=list(candidate.start),
        calculation=candidate.calculation,
    )


@dataclass
class Pending:
    """A candidate in the cascade and its task as written so far."""

    candidate: CorpusCandidate
    task: Task


@dataclass
class CorpusCascade:
    graph: CorpusGraph
    config: CorpusSynthesisConfig
    search: Callable | None = None
    solve: Callable[[Task], bool] | None = None
    no_tool: Callable[[list[str]], list[str]] | None = None
    writer: object | None = None  # a generator (hf:, vllm:, openai:) when a model writes questions
    rejected: list[RejectedTask] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    written: dict[str, Task] = field(default_factory=dict)  # candidate key -> its task, written once
    asked: set[str] = field(default_factory=set)  # candidates a model was asked to write, once each

    def fill(self, pool: Pool, count: int, split: str, conflicts: HeldOutPages | None = None) -> list[Task]:
        accepted: list[Task] = []
        skipped: list[CorpusCandidate] = []
        while len(accepted) < count:
            taken = pool.take(2 * (count - len(accepted)) + 4)
            if not taken:
                break
            batch = []
            for candidate in taken:
                task = self._task(candidate)
                if conflicts is not None and conflicts(task):
                    skipped.append(candidate)
                else:
                    batch.append(Pending(candidate, task))
            accepted += self._verify(batch, count - len(accepted), pool)
        pool.give_back(skipped)
        return [t.model_copy(update={"split": split}) for t in accepted]

    def _task(self, candidate: CorpusCandidate) -> Task:
        if candidate.key not in self.written:
            self.written[candidate.key] = corpus_task(self.graph, write_template(self.graph, candidate))
        return self.written[candidate.key]

    def _reject(self, task: Task, verifier: str, reason: str) -> None:
        self.rejected.append(rejection(task, verifier, reason))

    def _verify(self, batch: list[Pending], wanted: int, pool: Pool) -> list[Task]:
        alive: list[Pending] = []
        for item in batch:  # cheap, in memory
            reason = check_text_uniqueness(self.graph, item.candidate)
            if reason:
                self._reject(item.task, "uniqueness", reason)
                continue
            reason = check_text_consistency(self.graph, item.task)
            if reason:
                self._reject(item.task, "consistency", reason)
                continue
            alive.append(item)
        self._write_with_model(alive)
        if self.search is not None and alive:  # two batched searches
            reasons = check_text_retrievability(
                [w.task for w in alive], self.search, self.config.evidence_top_k, self.config.answer_depth
            )
            for item in alive:
                if item.task.id in reasons:
                    self._reject(item.task, "retrievability", reasons[item.task.id])
            alive = [w for w in alive if w.task.id not in reasons]
        accepted: list[Task] = []
        for i, item in enumerate(alive):  # the oracle, one task at a time, only as many as needed
            if len(accepted) == wanted:
                pool.give_back([w.candidate for w in alive[i:]])
                break
            if self.solve is not None and not self.solve(item.task):
                self._reject(item.task, "oracle", "the oracle did not solve it through the tools")
                continue
            accepted.append(item.task)
        if self.no_tool is not None and accepted:
            reasons = check_no_tool(accepted, self.no_tool)
            for task in accepted:
                if task.id in reasons:
                    self._reject(task, "no-tool", reasons[task.id])
            accepted = [t for t in accepted if t.id not in reasons]
        return accepted

    def _write_with_model(self, alive: list[Pending]) -> None:
        """Model-written questions for the batch (one call); a task written before keeps its own."""
        todo = [w for w in alive if w.candidate.key not in self.asked]
        if self.writer is None or not todo:
            return
        self.asked.update(w.candidate.key for w in todo)
        starts = [[self.graph.name(p) for p in w.candidate.start] for w in todo]
        results = write_with_model(self.writer, [w.task for w in todo], starts, self.config.writer_max_tokens)
        for item, result in zip(todo, results, strict=True):
            if result.failure is not None:
                self.failures.append(result.failure)
                continue
            item.task = item.task.model_copy(
                update={"question": result.question, "original_question": item.task.question}
            )
            self.written[item.candidate.key] = item.task


@dataclass
class CorpusSynthesis:
    tasks: list[Task]
    rejected: list[RejectedTask]
    report: list[SynthesisBucket]
    failures: list[Failure]
    rejected_by_stage: dict[str, int]
    drawn: dict[str, int]


def synthesize_corpus(cascade: CorpusCascade) -> CorpusSynthesis:
    """Held-out tasks first, then training tasks clear of them; each split's count is met shape by
    shape, a short shape made up from the others in order of their share."""
    config, graph = cascade.config, cascade.graph
    pools = {
        shape: Pool(sample_candidates(graph, shape, random.Random(f"{config.seed}:{shape}")))
        for shape in config.mix
    }
    order = sorted(config.mix, key=lambda s: (-config.mix[s], s))
    counts = config.counts()
    by_split: dict[str, list[Task]] = {}
    for split in ("eval", "train"):
        conflicts = HeldOutPages(by_split["eval"]) if split == "train" else None
        tasks = [
            t for shape in order for t in cascade.fill(pools[shape], counts[split][shape], split, conflicts)
        ]
        for shape in order:
            short = sum(counts[split].values()) - len(tasks)
            if short <= 0:
                break
            tasks += cascade.fill(pools[shape], short, split, conflicts)
        by_split[split] = tasks
    tasks = by_split["train"] + by_split["eval"]
    rejected_by_stage = dict(Counter(r.verifier for r in cascade.rejected))
    drawn = {shape: pool.drawn for shape, pool in pools.items()}
    if len(by_split["eval"]) < config.eval_tasks or len(by_split["train"]) < config.train_tasks:
        raise ValueError(
            f"the corpus yields {len(by_split['train'])}/{config.train_tasks} train and "
            f"{len(by_split['eval'])}/{config.eval_tasks} held-out tasks (candidates drawn per shape: "
            f"{drawn}; rejected: {rejected_by_stage}): ask for fewer tasks or give a larger corpus"
        )
    report = bucket_report(tasks, config, drawn)
    return CorpusSynthesis(tasks, cascade.rejected, report, cascade.failures, rejected_by_stage, drawn)


def bucket_report(
    tasks: list[Task], config: CorpusSynthesisConfig, drawn: dict[str, int]
) -> list[SynthesisBucket]:
    """Target against achieved per bucket: a shape's target counts in the bucket its tasks are in."""
    shape_bucket = {t.template.removeprefix("corpus:"): t.bucket for t in tasks}
    target: Counter[str] = Counter()
    candidates: Counter[str] = Counter()
    for shape, share in config.mix.items():
        bucket = shape_bucket.get(shape, f"{shape} (none accepted)")
        target[bucket] += share
        candidates[bucket] += drawn.get(shape, 0)
    per_split = Counter((t.bucket, t.split) for t in tasks)
    buckets = sorted(set(target) | {t.bucket for t in tasks})
    return [
        SynthesisBucket(
            bucket=b,
            hard=Bucket.parse(b).hard if b.startswith("h") and "(" not in b else False,
            target_share=round(target[b], 4),
            achieved_share=round((per_split[(b, "train")] + per_split[(b, "eval")]) / len(tasks), 4),
            train=per_split[(b, "train")],
            eval=per_split[(b, "eval")],
            candidates=candidates[b],
        )
        for b in buckets
    ]


def produce_corpus_tasks(
    work: Path, config: CorpusSynthesisConfig, inputs: Inputs, store: ArtifactStore
) -> None:
    table = read_table(inputs["corpus"])
    graph = CorpusGraph(
        table.column("id").to_pylist(), table.column("title").to_pylist(), table.column("text").to_pylist()
    )
    tool = search_tool_for(inputs["index"])
    tools = ToolConfig(top_k=config.evidence_top_k)
    writer = None
    if config.writer != TEMPLATE:
        from tasks.llm.engines import generator_from_spec

        writer = generator_from_spec(config.writer)
    cascade = CorpusCascade(
        graph,
        config,
        tool.search,
        solve=lambda task: oracle_trajectory(task, tool, tools)[1],
        no_tool=(lambda qs: no_tool_answers(config.no_tool_model, qs)) if config.no_tool_model else None,
        writer=writer,
    )
    result = synthesize_corpus(cascade)
    write_table(work, result.tasks)
    write_table(work, result.rejected, name="rejected")
    write_table(work, result.report, name="report")
    if result.failures:
        write_table(work, result.failures, name="failures")


def models_environment(config: CorpusSynthesisConfig, inputs: Inputs) -> dict:
    """The weights behind a local writer or no-tool model path (their spec strings do not pin them)."""
    models = {
        "writer": None if config.writer == TEMPLATE else config.writer,
        "no_tool_model": config.no_tool_model,
    }
    found = {role: spec_environment(spec) for role, spec in models.items() if spec}
    return {role: environment for role, environment in found.items() if environment}


STAGE = Stage(
    name="synthesize-corpus",
    kind="tasks",
    produce=produce_corpus_tasks,
    config_model=CorpusSynthesisConfig,
    environment=models_environment,
)
