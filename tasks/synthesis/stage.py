"""The synthesis stage: a target mix over difficulty buckets in, verified train and held-out tasks out.

Dual-constrained synthesis (REDSearcher): the user gives the share of tasks wanted in each bucket
of (hops, treewidth k, MSD). Every candidate the world holds is sampled and bucketed; each bucket
is then filled by running candidates through the verifier cascade until the bucket's counts are
met, both splits in step from the same candidate stream. An impossible mix fails before any work with what is possible: a bucket no
question shape reaches fails when the config is built, a bucket the world holds too few candidates
for fails before the world is written (:func:`check_capacity`).

The held-out split shares no answer entity, subgraph root, named or starting entity, and no
(subject, relation, object) fact with training, so a policy cannot pass evaluation by remembering a
training bridge. Filling the splits in step keeps that rule from skewing them: a split filled first
would claim most of the few entities many questions end on (countries), and training would see
far fewer questions of that kind than evaluation asks. The artifact holds the tasks, every rejected candidate with its verifier and
reason (``rejected``), and the target-versus-achieved table per bucket (``report``).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage import ArtifactStore
from storage.schemas import Document, Entity, RejectedTask, SynthesisBucket, Task, Triple
from storage.store import read_rows, write_table
from tasks.agent.environment import ToolConfig
from tasks.agent.oracle import oracle_trajectory
from tasks.corpus.world import WorldConfig, generate_world
from tasks.llm.engines import check_model_spec
from tasks.search.tools import search_tool_for
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.difficulty import (
    Bucket,
    describe_shapes,
    min_source_dispersion,
    structural_problem,
    treewidth,
)
from tasks.synthesis.evidence import load_tasks, plan_hops
from tasks.synthesis.graph import KnowledgeGraph, Subgraph
from tasks.synthesis.questions import paraphrase_ok, paraphrase_questions, write_question
from tasks.synthesis.sampling import SHAPES, sample_subgraphs, shapes_table
from tasks.synthesis.verify import (
    check_consistency,
    check_no_tool,
    check_retrievability,
    check_uniqueness,
    no_tool_answers,
    rejection,
)

__all__ = ["DEFAULT_MIX", "SynthesisConfig", "gold_facts", "load_tasks", "synthesize"]

# Mostly two and three hops, so the demo's oracle demonstrations stay short; 40% hard (k >= 2,
# MSD >= 3 or 4+ hops): three-hop chains, re-converging triangles, described two-hop chains.
DEFAULT_MIX = {
    "h2-k1-m2": 0.35,  # two-hop chains (the two-hop templates)
    "h2-k1-m1": 0.10,  # an entity pinned by two of its relations, on its own page
    "h3-k1-m2": 0.15,  # tool-augmented: how old a founder was at the founding; three-fact hubs
    "h3-k1-m3": 0.10,  # three-hop chains
    "h3-k2-m2": 0.15,  # re-converging paths (treewidth 2)
    "h4-k1-m2": 0.15,  # two-hop chains from a described (obfuscated) root
}


class SynthesisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed for sampling and the train/eval split.")
    train_tasks: int = Field(64, ge=1, le=1_000_000, description="Tasks for collection and training.")
    eval_tasks: int = Field(24, ge=1, le=100_000, description="Held-out tasks for evaluation.")
    mix: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MIX),
        description="Target share of tasks per difficulty bucket h<hops>-k<treewidth>-m<msd> (on the "
        "command line: h2-k1-m2=0.5,h3-k2-m2=0.5); shares are normalised to sum to 1.",
    )
    shapes: list[str] = Field(
        default_factory=lambda: list(SHAPES),
        description="Question shapes to sample: chain, hub, converge (treewidth 2), clique (3), tool.",
    )
    evidence_top_k: int = Field(
        2,
        ge=1,
        le=50,
        description="Keep a task only if each hop's gold document is in the top k results of its "
        "query: the k the agent's search shows (tools.top_k), so the oracle never opens an unseen id.",
    )
    answer_depth: int = Field(
        50,
        ge=1,
        le=1000,
        description="Retrievability: the answer must be in this many results for the question.",
    )
    paraphrase: str | None = Field(
        None, description="Model spec that rewrites questions (the template's question is kept beside)."
    )
    no_tool_model: str | None = Field(
        None, description="Model spec that answers without search; tasks it gets right are dropped."
    )

    @field_validator("mix", mode="before")
    @classmethod
    def _mix_from_text(cls, value):
        return shares_from_text(value, "bucket=share pairs: h2-k1-m2=0.5,h3-k2-m2=0.5")

    @field_validator("paraphrase", "no_tool_model")
    @classmethod
    def _known_spec(cls, spec: str | None) -> str | None:
        return spec if spec is None else check_model_spec(spec)

    @model_validator(mode="after")
    def _reachable_mix(self) -> SynthesisConfig:
        unknown = sorted(set(self.shapes) - set(SHAPES))
        if unknown or not self.shapes:
            raise ValueError(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
        if not self.mix or any(share < 0 for share in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("the mix needs at least one bucket with a positive share")
        table = shapes_table(self.shapes)
        problems = [structural_problem(Bucket.parse(b), table) for b in self.mix]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError(
                f"unreachable target: {'; '.join(problems)}. Possible with shapes {self.shapes}: "
                f"{describe_shapes(table)}"
            )
        total = sum(self.mix.values())
        self.mix = {str(Bucket.parse(b)): share / total for b, share in self.mix.items() if share > 0}
        return self

    def counts(self) -> dict[str, dict[str, int]]:
        """Tasks per bucket for each split: the shares times the split's size, rounded so the
        counts add up (largest remainder)."""
        return {"eval": allocate(self.eval_tasks, self.mix), "train": allocate(self.train_tasks, self.mix)}


def shares_from_text(value, form: str):
    """A mix as the command line writes it (``h2-k1-m2=0.5,h3-k2-m2=0.5``) as a dict; a dict as is."""
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"write the mix as {form}")
        return {k.strip(): float(v) for k, v in pairs}
    return value


def allocate(total: int, shares: dict[str, float]) -> dict[str, int]:
    exact = {b: total * s for b, s in shares.items()}
    counts = {b: int(v) for b, v in exact.items()}
    for b in sorted(exact, key=lambda b: (counts[b] - exact[b], b))[: total - sum(counts.values())]:
        counts[b] += 1
    return counts


# --- candidates ------------------------------------------------------------------------------------


@dataclass
class Candidate:
    sub: Subgraph
    bucket: Bucket
    k_exact: bool
    msd_exact: bool
    task: Task | None = None  # written when the cascade first reaches it


def difficulty_of(graph: KnowledgeGraph, sub: Subgraph) -> tuple[Bucket, bool, bool]:
    # each literal is its own node: two facts with the value 1871 do not close a cycle
    edges = [
        (f.subject, f"{f.object}@{f.subject}.{f.relation}" if f.is_attribute else f.object) for f in sub.facts
    ]
    k, k_exact = treewidth(edges)
    msd, msd_exact, _ = min_source_dispersion([graph.sources[f] for f in sub.facts])
    return Bucket(len(sub.facts), k, msd), k_exact, msd_exact


def candidate_pool(graph: KnowledgeGraph, config: SynthesisConfig) -> dict[str, list[Candidate]]:
    """Every sampled candidate in a wanted bucket, deduplicated, in seeded random order."""
    wanted = set(config.mix)
    hops = {Bucket.parse(b).hops for b in wanted}
    pool: dict[str, list[Candidate]] = defaultdict(list)
    seen = set()
    for sub in sample_subgraphs(graph, random.Random(config.seed), config.shapes, hops):
        key = (sub.pattern, sub.answer, tuple(sorted((f.subject, f.relation, f.object) for f in sub.facts)))
        if key in seen:
            continue
        seen.add(key)
        bucket, k_exact, msd_exact = difficulty_of(graph, sub)
        if str(bucket) in wanted:
            pool[str(bucket)].append(Candidate(sub, bucket, k_exact, msd_exact))
    rng = random.Random(config.seed)
    for candidates in pool.values():
        rng.shuffle(candidates)
    return pool


def capacity_problem(
    pool: dict[str, list[Candidate]], config: SynthesisConfig, extra_train: int = 0
) -> str | None:
    """What the world lacks for the mix, or None. ``extra_train`` counts a grown pool's tasks the way
    the pool stage shares them out (on their own, after the synthesis's), so this check and the
    stage agree bucket by bucket."""
    counts = config.counts()
    extra = allocate(extra_train, config.mix)
    needed = {b: counts["eval"][b] + counts["train"][b] + extra[b] for b in config.mix}
    short = [
        f"{b}: needs {needed[b]}, the world holds {len(pool.get(b, []))}"
        for b in config.mix
        if len(pool.get(b, [])) < needed[b]
    ]
    if not short:
        return None
    held = ", ".join(f"{b} {len(pool.get(b, []))}" for b in sorted(config.mix))
    return (
        f"the world holds too few candidates ({'; '.join(short)}); candidates per bucket, before "
        f"verification: {held}. Grow the world (--world.people, --world.works ...) or ask for fewer tasks"
    )


@lru_cache(maxsize=8)
def _capacity_problem_cached(world_json: str, synthesis_json: str, extra_train: int) -> str | None:
    world = generate_world(WorldConfig.model_validate_json(world_json))
    config = SynthesisConfig.model_validate_json(synthesis_json)
    graph = KnowledgeGraph(world.entities, world.triples)
    return capacity_problem(candidate_pool(graph, config), config, extra_train)


CAPACITY_CHECK_MAX_ENTITIES = 50_000


def check_capacity(world: WorldConfig, config: SynthesisConfig, extra_train: int = 0) -> None:
    """Fail before any artifact is written when the world cannot hold the mix and ``extra_train``
    more training tasks (a grown pool): the world is
    generated in memory (it is seeded) and its candidates counted. Skipped above
    ``CAPACITY_CHECK_MAX_ENTITIES``, where the synthesis stage itself reports a shortfall."""
    entities = (
        world.countries + world.cities + world.people + world.organisations + world.works + world.events
    )
    if entities > CAPACITY_CHECK_MAX_ENTITIES:
        return
    problem = _capacity_problem_cached(world.model_dump_json(), config.model_dump_json(), extra_train)
    if problem:
        raise ValueError(problem)


# --- the cascade over a bucket ---------------------------------------------------------------------


@dataclass
class Synthesis:
    tasks: list[Task]
    rejected: list[RejectedTask]
    report: list[SynthesisBucket]
    rejected_by_stage: dict[str, int] = field(default_factory=dict)


@dataclass
class Cascade:
    graph: KnowledgeGraph
    config: SynthesisConfig
    search: Callable | None
    solve: Callable[[Task], bool] | None
    documents: dict[str, str] | None
    no_tool: Callable[[list[str]], list[str]] | None
    rejected: list[RejectedTask] = field(default_factory=list)

    def fill(self, candidates: list[Candidate], count: int, split: str, conflicts=None) -> list[Task]:
        """Verified tasks from the front of ``candidates`` (consumed) until ``count`` are accepted;
        candidates in conflict with the held-out split are passed over and left in place."""
        accepted: list[Task] = []
        skipped: list[Candidate] = []
        while len(accepted) < count and candidates:
            batch: list[Candidate] = []
            while candidates and len(batch) < 2 * (count - len(accepted)) + 4:
                candidate = candidates.pop(0)
                self._write(candidate)
                if conflicts is not None and conflicts(candidate.task):
                    skipped.append(candidate)
                else:
                    batch.append(candidate)
            accepted += self._verify(batch, count - len(accepted), candidates)
        candidates[:0] = skipped
        return [t.model_copy(update={"split": split}) for t in accepted]

    def _write(self, candidate: Candidate) -> None:
        if candidate.task is not None:
            return
        sub, graph = candidate.sub, self.graph
        written = write_question(graph, sub)
        facts = tuple(sorted((f.subject, f.relation, f.object) for f in sub.facts))
        digest = hashlib.sha256(f"{sub.pattern}|{sub.answer}|{facts}".encode()).hexdigest()[:12]
        candidate.task = Task(
            id=digest,
            question=written.question,
            answer=written.answer,
            hops=plan_hops(graph, sub),
            template=sub.pattern,
            split="train",
            msd=candidate.bucket.msd,
            msd_exact=candidate.msd_exact,
            treewidth=candidate.bucket.k,
            treewidth_exact=candidate.k_exact,
            bucket=str(candidate.bucket),
            root=sub.root,
            answer_entity=sub.answer if not written.calculation or written.choices else "",
            named=list(sub.named),
            calculation=written.calculation,
            choices=written.choices,
        )

    def _reject(self, candidate: Candidate, verifier: str, reason: str) -> None:
        self.rejected.append(rejection(candidate.task, verifier, reason))

    def _verify(self, batch: list[Candidate], wanted: int, rest: list[Candidate]) -> list[Task]:
        alive = []
        for c in batch:  # cheap, in memory
            reason = check_uniqueness(self.graph, c.sub)
            if reason:
                self._reject(c, "uniqueness", reason)
                continue
            reason = check_consistency(self.graph, c.sub, c.task, self.documents)
            if reason:
                self._reject(c, "consistency", reason)
                continue
            alive.append(c)
        if self.search is not None and alive:  # two batched searches
            reasons, kept = check_retrievability(
                self.graph,
                [c.task for c in alive],
                self.search,
                self.config.evidence_top_k,
                self.config.answer_depth,
            )
            for c in alive:
                if c.task.id in reasons:
                    self._reject(c, "retrievability", reasons[c.task.id])
                else:
                    c.task = kept[c.task.id]
            alive = [c for c in alive if c.task.id not in reasons]
        accepted: list[Task] = []
        for i, c in enumerate(alive):  # the oracle, one task at a time, only as many as needed
            if len(accepted) == wanted:
                rest[:0] = alive[i:]  # verified so far, not needed yet: back to the front
                break
            if self.solve is not None and not self.solve(c.task):
                self._reject(c, "oracle", "the oracle did not solve it through the tools")
                continue
            accepted.append(c.task)
        if self.no_tool is not None and accepted:
            reasons = check_no_tool(accepted, self.no_tool)
            by_id = {c.task.id: c for c in alive}
            for task_id, reason in reasons.items():
                self._reject(by_id[task_id], "no-tool", reason)
            accepted = [t for t in accepted if t.id not in reasons]
        return accepted


class HeldOut:
    """What the other split must not share with these tasks (roots, starting and named entities,
    answer entities, gold facts); grows as the split is filled."""

    def __init__(self, tasks: list[Task] = ()) -> None:
        self.entities: set[str] = set()
        self.answers: set[str] = set()
        self.facts: set[tuple[str, str, str]] = set()
        self.add(tasks)

    def add(self, tasks: list[Task]) -> None:
        self.entities |= {e for t in tasks for e in (t.root, t.hops[0].subject, *t.named)}
        self.answers |= {t.answer_entity for t in tasks if t.answer_entity}
        self.facts |= {f for t in tasks for f in gold_facts(t)}

    def __call__(self, task: Task) -> bool:
        return bool(
            {task.root, task.hops[0].subject, *task.named} & self.entities
            or task.answer_entity in self.answers
            or gold_facts(task) & self.facts
        )


def fill_in_step(
    cascade: Cascade, candidates: list[Candidate], wanted: dict[str, int], claimed: dict[str, HeldOut]
) -> dict[str, list[Task]]:
    """One bucket's tasks for both splits, drawn one at a time from the same candidate stream: the
    split furthest behind its count takes the next candidate that shares nothing with the other
    split. Both splits thus claim answer entities at the same rate and ask the same kinds of
    questions; filling one split first would leave the other the entities it did not need, and
    taking several at a time lets one split claim a run of the few countries."""
    got: dict[str, list[Task]] = {split: [] for split in wanted}
    open_splits = {split for split, n in wanted.items() if n > 0}
    while open_splits and candidates:
        split = min(sorted(open_splits), key=lambda s: len(got[s]) / wanted[s])
        (other,) = set(wanted) - {split}
        accepted = cascade.fill(candidates, 1, split, claimed[other])
        got[split] += accepted
        claimed[split].add(accepted)
        if len(got[split]) == wanted[split] or not accepted:
            open_splits.discard(split)
    return got


def gold_facts(task: Task) -> set[tuple[str, str, str]]:
    """The (subject, relation, object) facts on a task's gold path."""
    return {(h.subject, h.relation, h.object) for h in task.hops}


def synthesize_report(
    entities: list[Entity],
    triples: list[Triple],
    config: SynthesisConfig,
    search=None,
    *,
    solve: Callable[[Task], bool] | None = None,
    documents: list[Document] | None = None,
    no_tool: Callable[[list[str]], list[str]] | None = None,
    paraphrase: Callable[[list[str]], list[str]] | None = None,
) -> Synthesis:
    """Tasks meeting ``config.mix``, every rejection with its reason, and the per-bucket report.

    ``search`` is a search tool's batched ``search``; ``solve`` runs the oracle on one task.
    """
    graph = KnowledgeGraph(entities, triples)
    pool = candidate_pool(graph, config)
    problem = capacity_problem(pool, config)
    if problem:
        raise ValueError(problem)
    available = {b: len(pool.get(b, [])) for b in config.mix}
    texts = None if documents is None else {d.id: d.text for d in documents}
    cascade = Cascade(graph, config, search, solve, texts, no_tool)
    counts = config.counts()
    claimed = {"eval": HeldOut(), "train": HeldOut()}
    filled: dict[str, list[Task]] = {"eval": [], "train": []}
    for bucket in sorted(config.mix):
        wanted = {split: counts[split][bucket] for split in filled}
        for split, got in fill_in_step(cascade, pool[bucket], wanted, claimed).items():
            filled[split] += got
    tasks = filled["train"] + filled["eval"]
    per_split = Counter((t.bucket, t.split) for t in tasks)
    rejected_by_stage = dict(Counter(r.verifier for r in cascade.rejected))
    short = [
        f"{b}: {per_split[(b, 'eval')]}/{counts['eval'][b]} held-out, {per_split[(b, 'train')]}/{counts['train'][b]} train"
        for b in sorted(config.mix)
        if per_split[(b, "eval")] < counts["eval"][b] or per_split[(b, "train")] < counts["train"][b]
    ]
    if short:
        raise ValueError(
            f"after verification the world yields too few tasks ({'; '.join(short)}; rejected: "
            f"{rejected_by_stage}): grow the world or ask for fewer tasks"
        )
    if paraphrase is not None:
        tasks = paraphrased(tasks, paraphrase, graph)
    report = [
        SynthesisBucket(
            bucket=b,
            hard=Bucket.parse(b).hard,
            target_share=round(config.mix[b], 4),
            achieved_share=round((per_split[(b, "train")] + per_split[(b, "eval")]) / len(tasks), 4),
            train=per_split[(b, "train")],
            eval=per_split[(b, "eval")],
            candidates=available[b],
        )
        for b in sorted(config.mix)
    ]
    return Synthesis(tasks, cascade.rejected, report, rejected_by_stage)


def paraphrased(tasks: list[Task], paraphrase, graph: KnowledgeGraph) -> list[Task]:
    """The tasks with each question rewritten by ``paraphrase`` where the rewrite keeps every named
    entity and does not give the answer away; a rejected rewrite leaves its task as it was."""
    rewritten = paraphrase([t.question for t in tasks])
    out = []
    for task, text in zip(tasks, rewritten, strict=True):
        keep = [graph.name(e) for e in task.named]
        if paraphrase_ok(task.question, text, keep, task.answer):
            task = task.model_copy(update={"question": text, "original_question": task.question})
        out.append(task)
    return out


def synthesize(
    entities: list[Entity], triples: list[Triple], config: SynthesisConfig, search=None
) -> list[Task]:
    """The tasks alone (see :func:`synthesize_report`)."""
    return synthesize_report(entities, triples, config, search).tasks


def produce_tasks(work: Path, config: SynthesisConfig, inputs: Inputs, store: ArtifactStore) -> None:
    world = inputs["world"]
    tool = search_tool_for(inputs["index"])
    tools = ToolConfig(top_k=config.evidence_top_k)
    result = synthesize_report(
        read_rows(world, Entity, "entities"),
        read_rows(world, Triple, "triples"),
        config,
        tool.search,
        solve=lambda task: oracle_trajectory(task, tool, tools)[1],
        documents=read_rows(world, Document),
        no_tool=(lambda qs: no_tool_answers(config.no_tool_model, qs)) if config.no_tool_model else None,
        paraphrase=(lambda qs: paraphrase_questions(config.paraphrase, qs)) if config.paraphrase else None,
    )
    write_table(work, result.tasks)
    write_table(work, result.rejected, name="rejected")
    write_table(work, result.report, name="report")


STAGE = Stage(name="synthesize", kind="tasks", produce=produce_tasks, config_model=SynthesisConfig)
