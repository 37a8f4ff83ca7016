"""The rubric stages: evidence trees, query-rubric pairs, audits; each a cached artifact.

``rubric-trees`` (inputs: the world or a user corpus, and its index) grows one tree per seed;
``rubric-pairs`` (inputs: the trees) writes one pair per tree; ``rubric-audit`` (inputs: the pairs,
the trees, and the corpus whose documents the leaves cite) keeps, revises or drops each pair and
holds the final rubric set (its ``rubrics`` table), which :mod:`tasks.rubrics.export` turns into a
Hugging Face dataset. Lineage runs from every pair to the documents it rests on: items cite leaves,
leaves cite documents of the corpus artifact, and the audit checks each link against that artifact.

Model-written parts (a tree builder, a writer, an auditor) take any model spec; their unreadable
replies are rows of the artifact's ``failures`` table with the raw text, and the stage carries on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage import ArtifactRef, ArtifactStore
from storage.schemas import (
    Document,
    Entity,
    EvidenceLeaf,
    EvidenceTree,
    Failure,
    RubricPair,
    TreeNode,
    Triple,
)
from storage.store import read_rows, read_table, write_table
from tasks.llm.engines import check_model_spec, spec_environment
from tasks.rubrics.asking import rubric_model
from tasks.rubrics.audit import combine, final_pair, model_audits, rule_audit
from tasks.rubrics.corpus_evidence import CorpusExpander
from tasks.rubrics.synthesis import DETERMINISTIC, tree_views, write_pairs
from tasks.rubrics.tree import TreeLimits, grow_trees
from tasks.rubrics.world_evidence import WorldExpander
from tasks.search.tools import search_tool_for
from tasks.stage_spec import Inputs, Stage

SEED_TYPES = ("person", "organisation", "work", "event", "city", "country")


class _ModelPart(BaseModel):
    """Settings shared by every part that may be a model: how it is asked."""

    model_config = ConfigDict(extra="forbid")
    model_only: ClassVar[tuple[str, ...]] = ("max_new_tokens", "max_reasks")
    deterministic_only: ClassVar[tuple[str, ...]] = ()

    max_new_tokens: int = Field(768, ge=16, le=8192, description="Tokens per model reply at most.")
    max_reasks: int = Field(1, ge=0, le=10, description="Re-asks after a malformed model reply.")

    def model_spec(self) -> str | None:
        """The model spec this part asks, or None for its deterministic mode; every part overrides it
        (trees, pairs and audits name their model in fields of their own)."""
        raise NotImplementedError

    def for_id(self):
        """Settings the chosen mode never reads stay out of the id: how a model would be asked when
        none is, what the deterministic writer would do when a model writes."""
        unused = self.deterministic_only if self.model_spec() else self.model_only
        return self.model_copy(update={k: type(self).model_fields[k].default for k in unused})


def _spec(value: str) -> str:
    return value if value == DETERMINISTIC else check_model_spec(value)


class TreeConfig(_ModelPart):
    trees: int = Field(16, ge=1, le=1_000_000, description="Trees to grow, one per seed.")
    seeds: list[str] = Field(
        default_factory=list,
        description="Seed entity ids (world) or document ids (corpus); default: drawn at random.",
    )
    random_seed: int = Field(0, description="Seed of the draw of seeds.")
    seed_types: list[str] = Field(
        default_factory=lambda: ["person", "organisation", "work", "event", "city"],
        description="World entity types seeds are drawn from.",
    )
    limits: TreeLimits = Field(default_factory=TreeLimits)
    builder: str = Field(
        DETERMINISTIC,
        description="deterministic (the world's graph, or a corpus's sentences and links) or a model "
        "spec (hf:PATH, vllm:PATH, openai:MODEL@URL) that extracts statements and proposes children.",
    )

    @field_validator("builder")
    @classmethod
    def _known_builder(cls, value: str) -> str:
        return _spec(value)

    @field_validator("seed_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SEED_TYPES))
        if unknown or not value:
            raise ValueError(f"seed types {unknown} unknown; choose from {', '.join(SEED_TYPES)}")
        return value

    def model_spec(self) -> str | None:
        return None if self.builder == DETERMINISTIC else self.builder

    def for_id(self) -> TreeConfig:
        """Named seeds make the draw's settings moot."""
        config = super().for_id()
        if not self.seeds:
            return config
        return config.model_copy(
            update={
                k: type(self).model_fields[k].get_default(call_default_factory=True)
                for k in ("trees", "random_seed", "seed_types")
            }
        )


class PairConfig(_ModelPart):
    model_only: ClassVar[tuple[str, ...]] = ("max_new_tokens", "max_reasks", "prompt_leaves")
    deterministic_only: ClassVar[tuple[str, ...]] = ("items",)
    writer: str = Field(
        DETERMINISTIC,
        description="deterministic (the world's facts and templates; no model) or a model spec.",
    )
    items: int = Field(7, ge=5, le=8, description="Deterministic writer: rubric items per pair (5-8).")
    seed: int = Field(0, description="Seed of the leaf choice.")
    prompt_leaves: int = Field(40, ge=5, le=500, description="Model writer: leaves shown per tree at most.")

    @field_validator("writer")
    @classmethod
    def _known_writer(cls, value: str) -> str:
        return _spec(value)

    def model_spec(self) -> str | None:
        return None if self.writer == DETERMINISTIC else self.writer


class AuditConfig(_ModelPart):
    auditor: str | None = Field(
        None, description="A model spec that audits beside the rule checks; default: rule checks only."
    )

    @field_validator("auditor")
    @classmethod
    def _known_auditor(cls, value: str | None) -> str | None:
        return value if value is None else check_model_spec(value)

    def model_spec(self) -> str | None:
        return self.auditor


# --- trees -----------------------------------------------------------------------------------------


def draw_seeds(candidates: list[str], known: set[str], config: TreeConfig) -> list[str]:
    """The configured seeds (any ``known`` id), or ``trees`` drawn from ``candidates`` at random."""
    if config.seeds:
        unknown = [s for s in config.seeds if s not in known]
        if unknown:
            raise ValueError(f"seeds {unknown[:5]} are not in the world or corpus")
        return list(config.seeds)
    shuffled = sorted(candidates)
    random.Random(config.random_seed).shuffle(shuffled)
    return shuffled[: config.trees]


def world_expander(ref: ArtifactRef) -> tuple[WorldExpander, list[Entity]]:
    entities = read_rows(ref, Entity, "entities")
    return WorldExpander(entities, read_rows(ref, Triple, "triples"), read_rows(ref, Document)), entities


def corpus_expander(ref: ArtifactRef) -> CorpusExpander:
    table = read_table(ref).select(["id", "title", "text"])
    links = read_rows(ref, Triple, "triples")
    columns = [table.column(c).to_pylist() for c in ("id", "title", "text")]
    return CorpusExpander(*columns, links)


def produce_trees(work: Path, config: TreeConfig, inputs: Inputs, store: ArtifactStore) -> None:
    corpus, tool = inputs["corpus"], search_tool_for(inputs["index"])
    if corpus.kind == "world":
        expander, entities = world_expander(corpus)
        known = {e.id for e in entities}
        candidates = [e.id for e in entities if e.type in config.seed_types]
    else:  # a user corpus: documents linked to others make trees that branch
        expander = corpus_expander(corpus)
        known = set(expander.titles)
        linked = set(expander.mentioned_in) | {d for d, _ in expander.named}
        candidates = sorted(linked) or sorted(known)
    seeds = draw_seeds(candidates, known, config)
    if config.builder != DETERMINISTIC:
        from tasks.rubrics.model_evidence import ModelExpander

        model = rubric_model(config.builder, config.max_new_tokens, config.max_reasks)
        expander = ModelExpander(model, tool.document, expander.seed, config.limits)

    def search(queries: list[str], k: int) -> list[list[str]]:
        return [[tool.ids[p] for p, _ in ranked] for ranked in tool.retrieve(queries, k)]

    grown = grow_trees(seeds, expander, search, config.limits)
    write_table(work, grown.trees)
    write_table(work, grown.nodes, name="nodes")
    write_table(work, grown.leaves, name="leaves")
    if grown.failures:
        write_table(work, grown.failures, name="failures")


def load_trees(ref: ArtifactRef) -> tuple[list[EvidenceTree], list[TreeNode], list[EvidenceLeaf]]:
    return (
        read_rows(ref, EvidenceTree),
        read_rows(ref, TreeNode, "nodes"),
        read_rows(ref, EvidenceLeaf, "leaves"),
    )


# --- pairs ------------------------------------------------------------------------------------------


def produce_pairs(work: Path, config: PairConfig, inputs: Inputs, store: ArtifactStore) -> None:
    views = tree_views(*load_trees(inputs["trees"]))
    model = None
    if config.writer != DETERMINISTIC:
        model = rubric_model(config.writer, config.max_new_tokens, config.max_reasks)
    written = write_pairs(views, config.seed, config.items, model, config.prompt_leaves)
    write_table(work, written.pairs)
    if written.skipped:
        import pyarrow as pa

        write_table(work, pa.Table.from_pylist(written.skipped), name="skipped")
    if written.failures:
        write_table(work, written.failures, name="failures")


# --- audit ------------------------------------------------------------------------------------------


def produce_audit(work: Path, config: AuditConfig, inputs: Inputs, store: ArtifactStore) -> None:
    pairs = read_rows(inputs["pairs"], RubricPair)
    _, _, leaves = load_trees(inputs["trees"])
    documents = set(read_table(inputs["corpus"]).column("id").to_pylist())
    by_tree: dict[str, dict[str, EvidenceLeaf]] = {}
    for leaf in leaves:
        by_tree.setdefault(leaf.tree_id, {})[leaf.leaf_id] = leaf
    tree_leaves = [by_tree.get(p.tree_id, {}) for p in pairs]
    audits = [rule_audit(p, lv, documents) for p, lv in zip(pairs, tree_leaves, strict=True)]
    failures: list[Failure] = []
    if config.auditor:
        model = rubric_model(config.auditor, config.max_new_tokens, config.max_reasks)
        judged, failures = model_audits(pairs, tree_leaves, model)
        audits = [
            combine(p, a, judged[p.pair_id], config.auditor, lv, documents) if p.pair_id in judged else a
            for p, a, lv in zip(pairs, audits, tree_leaves, strict=True)
        ]
    final = [final_pair(p, a) for p, a in zip(pairs, audits, strict=True)]
    write_table(work, audits)
    write_table(work, [p for p in final if p is not None], name="rubrics")
    if failures:
        write_table(work, failures, name="failures")


def load_rubrics(ref: ArtifactRef) -> list[RubricPair]:
    """The final rubric set of an audit artifact (KEEP as written, REVISE as revised)."""
    return read_rows(ref, RubricPair, "rubrics")


def model_environment(config: _ModelPart, inputs: Inputs) -> dict:
    """The weights and precision behind a local model path, when a model takes part."""
    return spec_environment(config.model_spec())


def _stage(name: str, kind: str, produce, config_model: type[_ModelPart]) -> Stage:
    return Stage(
        name=name, kind=kind, produce=produce, config_model=config_model, environment=model_environment
    )


TREES_STAGE = _stage("rubric-trees", "evidence-trees", produce_trees, TreeConfig)
PAIRS_STAGE = _stage("rubric-pairs", "rubric-pairs", produce_pairs, PairConfig)
AUDIT_STAGE = _stage("rubric-audit", "rubric-audits", produce_audit, AuditConfig)
