"""Two-hop question synthesis from the world graph, with gold evidence per hop.

Each template chains two relations (A -r1-> B -r2-> C) and asks for C given A. The answer is only
reachable by finding B first, and each hop names the document that states it, so every task carries
the evidence path that the oracle replays and the reference judge rates against.

Two rules keep evaluation honest. A task is kept only if the search tool returns every hop's gold
document for the hop's query (see :mod:`tasks.synthesis.evidence`). And the held-out split shares no
fact with training: no (subject, relation, object) on an eval task's gold path is on any training
task's gold path, so a policy cannot pass evaluation by remembering a training bridge.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage import ArtifactStore
from storage.schemas import Entity, Hop, Task, Triple
from storage.store import read_rows, write_table
from tasks.search.tools import search_tool_for
from tasks.stage import Inputs, Stage
from tasks.synthesis.evidence import unretrievable_hops

# template name -> (first relation, second relation, question)
TEMPLATES: dict[str, tuple[str, str, str]] = {
    "founder-birthplace": ("founded_by", "born_in", "In which city was the founder of {a} born?"),
    "birthplace-country": ("born_in", "located_in", "In which country is the city where {a} was born?"),
    "employer-headquarters": (
        "works_for",
        "headquartered_in",
        "In which city is the headquarters of the organisation {a} works for?",
    ),
    "publisher-founder": ("published_by", "founded_by", "Who founded the organisation that published {a}?"),
    "author-birthplace": ("created_by", "born_in", "In which city was the author of {a} born?"),
    "event-country": ("held_in", "located_in", "In which country did {a} take place?"),
    "author-spouse": ("created_by", "spouse_of", "Who is the spouse of the author of {a}?"),
    "organiser-headquarters": (
        "organised_by",
        "headquartered_in",
        "In which city is the organiser of {a} headquartered?",
    ),
}


class SynthesisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed for sampling and the train/eval split.")
    train_tasks: int = Field(16, ge=1, le=1_000_000, description="Tasks for collection and training.")
    eval_tasks: int = Field(12, ge=1, le=100_000, description="Held-out tasks for evaluation.")
    templates: list[str] = Field(
        default_factory=lambda: list(TEMPLATES), description="Question templates to use."
    )

    evidence_top_k: int = Field(
        2,
        ge=1,
        le=50,
        description="Keep a task only if each hop's gold document is in the top k results of its "
        "query: the k the agent's search shows (tools.top_k), so the oracle never opens an unseen id.",
    )
    min_msd: int = Field(
        1, ge=1, le=2, description="Keep tasks whose facts need at least this many documents."
    )
    max_msd: int = Field(2, ge=1, le=2, description="... and at most this many (world.spread moves facts).")

    @model_validator(mode="after")
    def _known_templates(self) -> SynthesisConfig:
        if self.min_msd > self.max_msd:
            raise ValueError(f"min_msd {self.min_msd} is above max_msd {self.max_msd}")
        unknown = sorted(set(self.templates) - set(TEMPLATES))
        if unknown or not self.templates:
            raise ValueError(f"unknown templates {unknown}; choose from {sorted(TEMPLATES)}")
        return self


def synthesize(
    entities: list[Entity], triples: list[Triple], config: SynthesisConfig, search=None
) -> list[Task]:
    """All template instances with a unique answer, sampled and split into train and eval.

    ``search`` (a search tool's batched ``search``) drops tasks whose evidence it cannot retrieve.
    """
    by_id = {e.id: e for e in entities}
    outgoing: dict[tuple[str, str], list[Triple]] = defaultdict(list)
    for t in triples:
        outgoing[(t.subject, t.relation)].append(t)

    candidates: list[Task] = []
    for name in config.templates:
        first, second, question = TEMPLATES[name]
        for (subject, relation), hop1s in sorted(outgoing.items()):
            if relation != first or len(hop1s) != 1:
                continue
            bridge = hop1s[0]
            hop2s = outgoing.get((bridge.object, second), [])
            if len(hop2s) != 1 or hop2s[0].object == subject:
                continue
            answer = hop2s[0]
            hops = [_hop(bridge, by_id), _hop(answer, by_id)]
            msd = len({h.doc_id for h in hops})
            if not config.min_msd <= msd <= config.max_msd:
                continue
            text = question.format(a=by_id[subject].name)
            task_id = hashlib.sha256(f"{name}|{subject}".encode()).hexdigest()[:12]
            candidates.append(
                Task(
                    id=task_id,
                    question=text,
                    answer=by_id[answer.object].name,
                    hops=hops,
                    template=name,
                    split="train",
                    msd=msd,
                )
            )

    rng = random.Random(config.seed)
    rng.shuffle(candidates)
    found = len(candidates)
    if search is not None:
        missing = unretrievable_hops(candidates, search, config.evidence_top_k)
        candidates = [t for t in candidates if t.id not in missing]
    needed = config.train_tasks + config.eval_tasks
    if len(candidates) < needed:
        raise ValueError(
            f"the world yields {found} two-hop tasks, {len(candidates)} with retrievable evidence, but "
            f"{needed} were asked for (train_tasks + eval_tasks): grow the world or ask for fewer tasks"
        )
    # Held out means no shared fact: training keeps only tasks whose gold path avoids every eval
    # fact (and every eval task's starting entity, whose name the eval question gives away).
    eval_tasks = [t.model_copy(update={"split": "eval"}) for t in candidates[: config.eval_tasks]]
    eval_facts = {fact for t in eval_tasks for fact in gold_facts(t)}
    eval_subjects = {t.hops[0].subject for t in eval_tasks}
    train_tasks = [
        t
        for t in candidates[config.eval_tasks :]
        if t.hops[0].subject not in eval_subjects and not gold_facts(t) & eval_facts
    ]
    if len(train_tasks) < config.train_tasks:
        raise ValueError(
            f"only {len(train_tasks)} train tasks share no fact with the {config.eval_tasks} held-out "
            f"tasks, but {config.train_tasks} were asked for: grow the world or ask for fewer tasks"
        )
    return train_tasks[: config.train_tasks] + eval_tasks


def gold_facts(task: Task) -> set[tuple[str, str, str]]:
    """The (subject, relation, object) facts on a task's gold path."""
    return {(h.subject, h.relation, h.object) for h in task.hops}


def _hop(triple: Triple, by_id: dict[str, Entity]) -> Hop:
    return Hop(
        subject=triple.subject,
        subject_name=by_id[triple.subject].name,
        relation=triple.relation,
        object=triple.object,
        object_name=by_id[triple.object].name,
        doc_id=triple.doc_ids[0],
    )


def produce_tasks(work: Path, config: SynthesisConfig, inputs: Inputs, store: ArtifactStore) -> None:
    world = inputs["world"]
    tool = search_tool_for(inputs["index"])
    tasks = synthesize(
        read_rows(world, Entity, "entities"), read_rows(world, Triple, "triples"), config, tool.search
    )
    write_table(work, tasks)


def load_tasks(ref, split: str | None = None) -> list[Task]:
    tasks = read_rows(ref, Task)
    return [t for t in tasks if split is None or t.split == split]


STAGE = Stage(name="synthesize", kind="tasks", produce=produce_tasks, config_model=SynthesisConfig)
