"""Pydantic schemas of every artifact row.

These are the boundaries between stages: a stage writes rows of one of these models to Parquet, and
the next stage reads them back through the same model, so a malformed row fails loudly at the edge
instead of deep inside a later stage.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

ArtifactKind = Literal[
    "world",
    "corpus",
    "index",
    "tasks",
    "model",
    "trajectories",
    "trajectory-shard",
    "annotation-shard",
    "annotations",
    "selection",
    "checkpoint",
    "evaluation",
    "evidence-trees",
    "rubric-pairs",
    "rubric-audits",
]


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArtifactRef(Row):
    """The small reference a stage returns; payloads stay in the store."""

    id: str
    kind: ArtifactKind
    stage: str
    uri: str = Field(description="Directory of the artifact under the store root.")
    rows: int = 0
    reused: bool = Field(False, description="True when the artifact already existed and nothing ran.")


# --- world ---------------------------------------------------------------------------------------


class Entity(Row):
    id: str
    type: Literal["person", "city", "country", "organisation", "work", "event"]
    name: str
    attributes: dict[str, str] = Field(default_factory=dict)

    # Attribute keys differ by entity type; as JSON text they fit one Parquet column without nulls.
    @field_serializer("attributes", when_used="json")
    def _attributes_as_json(self, value: dict[str, str]) -> str:
        return json.dumps(value, sort_keys=True)

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_from_json(cls, value):
        return json.loads(value) if isinstance(value, str) else value


class Triple(Row):
    subject: str
    relation: str
    object: str
    doc_ids: list[str] = Field(description="Documents that state this fact.")
    evidence: str | None = Field(None, description="The sentence stating it, where the graph was mined.")


class Document(Row):
    id: str
    title: str
    text: str
    entity_id: str | None = None


# --- tasks ---------------------------------------------------------------------------------------


class Hop(Row):
    subject: str
    subject_name: str
    relation: str
    object: str
    object_name: str
    doc_id: str = Field(description="The document whose text states this hop.")
    query: str = Field(
        "",
        description="The search that finds this hop's document from what is known by then (empty: "
        "the subject's name and the relation's words). Hops found together share one query.",
    )
    evidence: str = Field(
        "",
        description="The sentence that states this hop, where it was read from a page's text (tasks "
        "from a user corpus); empty where a template renders it from the relation.",
    )


class Task(Row):
    id: str
    question: str
    answer: str
    aliases: list[str] = Field(default_factory=list)
    hops: list[Hop]
    template: str
    split: Literal["train", "eval"]
    msd: int = Field(0, description="Minimum number of distinct documents that state the task's facts.")
    msd_exact: bool = Field(True, description="False when msd is a greedy cover (an upper bound).")
    treewidth: int = Field(1, description="Treewidth k of the question's reasoning graph.")
    treewidth_exact: bool = Field(True, description="False when treewidth is a heuristic upper bound.")
    bucket: str = Field("", description="Difficulty bucket h<hops>-k<treewidth>-m<msd>.")
    root: str = Field("", description="The entity the question's subgraph was sampled from.")
    answer_entity: str = Field("", description="The answer's entity id; empty for a computed answer.")
    named: list[str] = Field(default_factory=list, description="Entities the question names.")
    calculation: str = Field(
        "", description="Tool-augmented: the arithmetic over looked-up values that gives the answer."
    )
    choices: list[str] = Field(
        default_factory=list,
        description="For a comparison: the two candidates; a negative calculation picks the first.",
    )
    original_question: str = Field("", description="The template's question when a paraphrase replaced it.")
    supporting: list[str] = Field(
        default_factory=list,
        description="A user's question: ids of the corpus pages that answer it (it has no hops).",
    )

    @property
    def evidence_doc_ids(self) -> list[str]:
        return [h.doc_id for h in self.hops]


# --- trajectories --------------------------------------------------------------------------------

ActionName = Literal["search", "open", "calculate", "answer", "invalid"]


class Step(Row):
    index: int
    thought: str
    action: ActionName
    argument: str
    observation: str = ""
    retrieved_doc_ids: list[str] = Field(default_factory=list)
    raw: str = Field("", description="The model's raw text for this step.")
    tool_error: str | None = Field(
        None, description="The tool's error class when the call failed (unknown page, bad expression)."
    )
    tokens: int = 0
    latency_s: float = 0.0
    critic_rating: int | None = Field(
        None, description="Rate-and-refine: the critic's 1-5 rating of this step."
    )
    rejected_json: str = Field(
        "[]", description="Rate-and-refine: earlier attempts at this step as JSON [{raw, rating, critique}]."
    )


class Trajectory(Row):
    id: str
    task_id: str
    policy: str
    sample_index: int
    temperature: float
    seed: int
    messages_json: str = Field(
        description="Chat messages with tool_calls, as JSON (what TRL's SFTTrainer takes)."
    )
    tools_json: str = Field(description="JSON schema of the tools offered to the agent.")
    steps: list[Step]
    final_answer: str | None = None
    finished: bool = Field(description="True when the agent gave an answer before the turn limit.")
    generated_tokens: int = 0
    revision: int = Field(
        0, description="Cut-and-regenerate: 0 for a first rollout, n for its n-th revision."
    )
    parent_id: str | None = Field(None, description="The trajectory this revision was cut from.")
    cut_step: int | None = Field(None, description="Steps kept from the parent before regenerating.")
    error: str | None = Field(
        None,
        description="Why the trajectory was cut short by a failure outside the agent's control (the "
        "model backend or the retriever gave up); such a trajectory counts as wrong and is never "
        "trained on. Its failure is also in the failures table.",
    )
    protocol_digest: str = Field(
        "", description="Digest of the system prompt and tool schema the agent was given."
    )
    template_digest: str | None = Field(
        None,
        description="Digest of the chat template that rendered its prompts; None when no local "
        "template did (the oracle, a served teacher). Training refuses a mismatch with the policy's.",
    )


# --- annotation, selection, evaluation -----------------------------------------------------------


class Annotation(Row):
    trajectory_id: str
    task_id: str
    policy: str
    exact_match: float
    f1: float
    step_ratings: list[int]
    mean_rating: float
    min_rating: int
    tool_calls: int
    judge: str
    judged: bool = Field(
        True, description="False when the step judge's reply for it could not be read (see failures)."
    )


JudgeFamily = Literal["outcome", "step", "process", "usefulness"]


class Judgement(Row):
    """One judge's verdict on one trajectory; a judge whose reply could not be read leaves a failure."""

    trajectory_id: str
    task_id: str
    judge: str = Field(description="'reference', 'exact-match', or the model spec of a judge model.")
    family: JudgeFamily = Field(
        description="outcome (answer right?), step (SRR-Judge 1-5 per step), process (Agent-RRM score "
        "and critique) or usefulness (Search-R2: did each search call return new evidence?)."
    )
    score: float = Field(description="The trajectory's score in [0, 1] from this judge.")
    step_ratings: list[int] = Field(default_factory=list, description="step: a 1-5 rating per step.")
    explanations: list[str] = Field(default_factory=list, description="step: why each rating.")
    refined_json: str = Field(
        "[]",
        description="step: [{step, thought, action}] for each step the judge rewrote: a better thought "
        "and action tag, which selection may substitute as a training target.",
    )
    useful: list[int] = Field(default_factory=list, description="usefulness: 0/1 per search call.")
    think: str = ""
    critique: str = Field("", description="process: the flaws, written to be shown to the agent.")
    leaks_answer: bool = Field(False, description="process: the critique reveals the gold answer.")
    raw: str = Field("", description="The judge model's reply, as written.")
    attempts: int = Field(1, description="Asks it took (re-asks after malformed replies included).")


class Rewards(Row):
    """Every reward of one trajectory, a column each, so selection can filter and rank on any."""

    trajectory_id: str
    task_id: str
    policy: str
    outcome: float = Field(description="Exact match of the last <answer> with the answer or an alias.")
    f1: float = Field(description="SQuAD token F1 against the answer and aliases (best of them).")
    search_r2: float | None = Field(
        None, description="Search-R2 hybrid r_out * (1 + mean u_i); None when usefulness is unknown."
    )
    reagent: float | None = Field(
        None, description="Reagent rule + lambda * score; None when the process score is unknown."
    )
    rubric: float | None = Field(
        None,
        description="DeepRubric process reward: sum(w * s) / sum(|w|) over a rubric of the task's "
        "intermediate facts (one per hop), graded by rule against the trajectory; None without hops.",
    )
    process_judge: str = ""
    usefulness_judge: str = ""


class JudgeReliability(Row):
    judge: str
    family: JudgeFamily
    judged: int
    failed: int = Field(description="Replies that could not be read, after re-asks.")
    parse_failure_rate: float
    auroc: float | None = Field(
        None, description="AUROC of the trajectory score for predicting a correct final answer."
    )
    mean_score: float | None = None
    critiques: int = 0
    leaks: int = Field(0, description="Critiques that reveal the gold answer.")
    leak_rate: float | None = None


class JudgeAgreement(Row):
    judge_a: str = Field(description="family:judge")
    judge_b: str
    trajectories: int
    spearman: float | None = Field(None, description="Spearman correlation of the trajectory scores.")
    ratings: int = Field(0, description="Paired ratings (steps, search calls or verdicts) for kappa.")
    kappa: float | None = Field(None, description="Cohen's kappa on paired ratings (same family).")
    kappa_quadratic: float | None = None


class Selection(Row):
    trajectory_id: str
    task_id: str
    source: Literal["policy", "oracle", "refined", "teacher"]
    reason: str
    copies: int = Field(1, description="Times the trajectory appears in training (hard-task oversampling).")
    solve_rate: float | None = Field(
        None, description="Share of the policy's samples on this task that were right."
    )


class EvalRow(Row):
    task_id: str
    trajectory_id: str
    policy: str
    sample_index: int
    exact_match: float
    f1: float
    tool_calls: int
    valid_format: bool
    failed: bool = Field(False, description="A backend or the retriever gave up; scored as wrong.")
    steps: int = Field(0, description="Turns the agent took.")
    invalid_actions: int = Field(0, description="Turns whose output was not a well-formed action.")
    supporting_recall: float | None = Field(
        None, description="Share of the task's supporting pages the agent retrieved; None: none given."
    )


class EvalSummary(Row):
    policy: str
    tasks: int
    samples_per_task: int
    k: int = Field(1, description="k of pass_at_k (unbiased estimator when k < samples_per_task).")
    pass_at_1: float
    pass_at_k: float
    failed: int = Field(0, description="Rollouts a backend or the retriever gave up on (scored wrong).")
    exact_match: float
    f1: float
    tool_calls: float
    format_valid: float
    ci_low: float = Field(0.0, description="Lower end of the 95% bootstrap interval of pass@1.")
    ci_high: float = Field(0.0, description="Upper end of the 95% bootstrap interval of pass@1.")
    invalid_action_rate: float = Field(0.0, description="Share of all turns that were not a valid action.")
    supporting_recall: float | None = Field(
        None, description="Mean share of supporting pages retrieved, where tasks name them (user questions)."
    )
    out_of_reach: int = Field(
        0,
        description="Tasks whose gold path takes more turns than the agent's max_turns (scored as they "
        "come: wrong unless the agent finds a shorter way).",
    )


class Failure(Row):
    stage: str
    item_id: str
    error_class: str
    message: str
    raw_output: str = ""
    attempts: int = 1
    artifact_id: str | None = None


class RunRecord(Row):
    flow_run_id: str
    flow_name: str
    parameters_json: str
    state: str
    started_at: datetime
    ended_at: datetime | None = None


# --- synthesis -----------------------------------------------------------------------------------


class RejectedTask(Row):
    """A candidate task a verifier turned down, kept with its reason (nothing vanishes silently)."""

    task_id: str
    bucket: str
    template: str
    question: str
    answer: str
    verifier: str = Field(description="uniqueness, consistency, retrievability, oracle or no-tool.")
    reason: str


class SynthesisBucket(Row):
    """One bucket of a synthesis report: what the mix asked for and what was achieved."""

    bucket: str
    hard: bool
    target_share: float
    achieved_share: float
    train: int
    eval: int
    candidates: int = Field(description="Candidates the world held for this bucket before verification.")


# --- rubrics (DeepRubric) ------------------------------------------------------------------------

Facet = Literal["overview", "timeline", "people", "places", "quantities", "comparisons", "risks"]


class StatedFact(Row):
    """A fact in machine-checkable form: what the rule grader looks for in a response."""

    subject: str = Field(description="The subject's name.")
    relation: str = Field(description="A world relation or attribute (born_in, founded_year, ...).")
    object: str = Field(description="The object's name, or the value of an attribute.")
    subject_aliases: list[str] = Field(default_factory=list, description="Other names of the subject.")
    object_aliases: list[str] = Field(default_factory=list, description="Other names of the object.")


class TreeNode(Row):
    """One sub-question of an evidence tree, answered by retrieval through the search tool."""

    tree_id: str
    node_id: str = Field(description="N1 (the root), N2, ... in breadth-first order.")
    parent: str | None = None
    depth: int
    facet: Facet
    query: str = Field(description="What was searched for this node.")
    topic: str = Field("", description="The entity (world) or document (corpus) the node asks about.")
    children: list[str] = Field(default_factory=list)
    retrieved_doc_ids: list[str] = Field(default_factory=list)
    stop_reason: str = Field(
        "", description="Why it has no children: depth, budget, no-new-facet, no-evidence, model-stop, failed"
    )


class EvidenceLeaf(Row):
    """An atomic statement an evidence tree established, with the documents that support it."""

    tree_id: str
    leaf_id: str = Field(description="L1, L2, ... within the tree.")
    node_id: str = Field(description="The sub-question it answers.")
    path: list[str] = Field(description="Node ids from the root to that sub-question.")
    facet: Facet
    statement: str = Field(max_length=240)
    doc_ids: list[str] = Field(description="Retrieved documents that state it.")
    facts: list[StatedFact] = Field(
        default_factory=list, description="The statement as checkable facts; empty for free text."
    )


class EvidenceTree(Row):
    tree_id: str
    seed: str = Field(description="The seed entity id (world) or document id (corpus).")
    seed_name: str
    seed_type: str = ""
    builder: str = Field(description="deterministic, or the model spec that expanded the nodes.")
    nodes: int
    leaves: int
    facets: list[str] = Field(default_factory=list, description="Facets with at least one leaf.")


class RubricItem(Row):
    """DeepRubric's rubric schema, plus the checkable facts of a factual item."""

    id: str = Field(description="R1, R2, ...")
    type: Literal["factual", "logical"]
    description: str
    weight: float = Field(ge=-1, le=1, description="Negative for content the answer should not contain.")
    source_leaf_ids: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list, description="Factual: statements from its leaves.")
    facts: list[StatedFact] = Field(
        default_factory=list, description="What the rule grader checks; empty leaves it to a model grader."
    )


class RubricPair(Row):
    """A research question and the rubric that grades answers to it, written from one tree's leaves."""

    pair_id: str
    tree_id: str
    seed: str
    question: str
    rubrics: list[RubricItem]
    selected_leaf_ids: list[str]
    merge_trace_json: str = Field(
        "[]", description="Bottom-up merges as JSON [{level, inputs, output_query, rationale}]."
    )
    writer: str = Field(description="deterministic, or the model spec that wrote it.")


class AuditIssue(Row):
    type: str
    severity: Literal["low", "medium", "high"]
    description: str


class RubricAudit(Row):
    """DeepRubric's audit of one pair; REVISE carries the revised question and rubrics."""

    pair_id: str
    tree_id: str
    decision: Literal["KEEP", "REVISE", "DROP"]
    error_tags: list[str] = Field(default_factory=list)
    major_issues: list[AuditIssue] = Field(default_factory=list)
    justification: str = ""
    fix_plan: str = ""
    revised_question: str = ""
    revised_rubrics: list[RubricItem] = Field(default_factory=list)
    implementation_guidance: str = ""
    auditor: str = Field("rules", description="rules, or rules+<model spec>.")
