"""The reference judge: every judgement of the judge families, from the gold evidence tasks carry.

It needs no language model, so the default pipeline annotates on a laptop, and it is the yardstick
that model judges are measured against (see :mod:`tasks.judge.reliability`).

Step ratings (SRR-Judge's 1-5 scale), which see the gold answer for the answer step:

- search/open that surfaces a gold document not seen before: 5; one already seen: 3; none: 2
- a tool error: 1; an invalid action: 1
- answer: 5 when exactly right, 3 when partly (token F1 > 0), else 1

Refined steps: a step rated below 5 is rewritten as the next step the gold path needs from what was
seen before it (the missing hop's search; once every gold page was seen, a tool task's calculation
until one succeeded, then the answer).

Search usefulness (Search-R2's u_i): a search call is useful when it surfaces a gold page not seen
before and is not a repeat of an earlier query.

Process score (the reward-model family; it never looks at the gold answer): the mean of evidence
coverage (share of gold pages surfaced), grounding (the final answer appears in what the tools
returned) and efficiency (share of tool calls that surfaced a new gold page or computed a value).
Its critique names the flaws and what is still missing, and never the answer: a critique that would
name it is replaced by a generic one.
"""

from __future__ import annotations

import json

from storage.schemas import Judgement, Step, Task, Trajectory
from tasks.rewards.outcome import exact_match, normalize_answer, token_f1
from tasks.synthesis.evidence import hop_query

JUDGE_NAME = "reference"
GENERIC_CRITIQUE = "Some fact the question depends on was not looked up; search for each link of the chain."


def _tool_failed(step: Step) -> bool:
    return step.observation.startswith(("No document", "Calculation error"))


def rate_steps(steps: list[Step], task: Task) -> list[int]:
    gold = set(task.evidence_doc_ids)
    answers = [task.answer, *task.aliases]
    seen: set[str] = set()
    ratings = []
    for step in steps:
        if step.action in ("search", "open"):
            if _tool_failed(step):
                ratings.append(1)
                continue
            found = gold & set(step.retrieved_doc_ids)
            ratings.append(5 if found - seen else 3 if found else 2)
            seen |= found
        elif step.action == "calculate":
            ratings.append(1 if step.observation.startswith("Calculation error") else 3)
        elif step.action == "answer":
            ratings.append(
                5 if exact_match(step.argument, answers) else 3 if token_f1(step.argument, answers) > 0 else 1
            )
        else:
            ratings.append(1)
    return ratings


def search_usefulness(steps: list[Step], task: Task) -> list[int]:
    """u_i per search call: 1 when it surfaces a gold page not seen before and is not a repeat."""
    gold = set(task.evidence_doc_ids)
    seen: set[str] = set()
    asked: set[str] = set()
    useful = []
    for step in steps:
        found = gold & set(step.retrieved_doc_ids)
        if step.action == "search":
            query = normalize_answer(step.argument)
            useful.append(int(bool(found - seen) and query not in asked and not _tool_failed(step)))
            asked.add(query)
        seen |= found
    return useful


def grounded(steps: list[Step], answer: str | None) -> bool:
    """Whether the answer appears in what the tools returned (the agent's own evidence, not gold)."""
    wanted = normalize_answer(answer or "")
    if not wanted:
        return False
    return any(f" {wanted} " in f" {normalize_answer(s.observation)} " for s in steps if s.action != "answer")


def process_parts(steps: list[Step], task: Task, answer: str | None) -> dict[str, float]:
    gold = set(task.evidence_doc_ids)
    seen: set[str] = set()
    productive = calls = 0
    for step in steps:
        if step.action not in ("search", "open", "calculate"):
            continue
        calls += 1
        if step.action == "calculate":
            productive += not _tool_failed(step)
            continue
        found = gold & set(step.retrieved_doc_ids)
        productive += bool(found - seen)
        seen |= found
    return {
        "coverage": len(seen) / len(gold) if gold else 0.0,
        "grounded": float(grounded(steps, answer)),
        "efficiency": productive / calls if calls else 0.0,
    }


def process_score(steps: list[Step], task: Task, answer: str | None) -> float:
    parts = process_parts(steps, task, answer)
    return round(sum(parts.values()) / len(parts), 4)


def leaks_answer(text: str, task: Task) -> bool:
    """Whether a text names the gold answer or an alias (as whole words, after normalisation)."""
    padded = f" {normalize_answer(text)} "
    return any(
        (wanted := normalize_answer(a)) and f" {wanted} " in padded for a in [task.answer, *task.aliases]
    )


def _missing_hop(task: Task, seen: set[str]):
    return next((hop for hop in task.hops if hop.doc_id not in seen), None)


def critique(steps: list[Step], task: Task, answer: str | None) -> str:
    """The flaws of a trajectory, written to be shown to the agent; it never names the answer."""
    gold = set(task.evidence_doc_ids)
    seen = gold & {d for s in steps for d in s.retrieved_doc_ids}
    flaws = []
    queries = [normalize_answer(s.argument) for s in steps if s.action == "search"]
    if len(set(queries)) < len(queries):
        flaws.append("The same search was repeated; a repeat returns nothing new.")
    if any(s.action == "invalid" for s in steps):
        flaws.append("A turn had no valid action tag.")
    if any(_tool_failed(s) for s in steps if s.action in ("open", "calculate")):
        flaws.append("A tool call failed (an unknown document id or bad arithmetic).")
    if not any(s.action in ("search", "open") for s in steps):
        flaws.append("No search was made: the answer is a guess.")
    missing = _missing_hop(task, seen)
    if missing is not None:
        flaws.append(
            f"Not yet found: {missing.subject_name}'s {missing.relation.replace('_', ' ')}. "
            f"Try <search>{hop_query(missing)}</search>."
        )
    if answer is None:
        flaws.append("No answer was given.")
    elif not grounded(steps, answer):
        flaws.append("The answer does not appear in anything the searches returned.")
    text = " ".join(flaws) or "No flaw found: the evidence was found and the answer rests on it."
    return GENERIC_CRITIQUE if leaks_answer(text, task) else text


def _next_gold_step(task: Task, seen: set[str], computed: bool) -> tuple[str, str]:
    """The gold path's next step (thought, action) from what was seen, in the oracle's wording: the
    missing hop's search; once every page is seen, the calculation a tool task needs; then the answer.
    A tool task's answer is refined to the calculation first: refined to the bare number, it taught the
    policy to answer numbers it never computed (and to answer them to questions that ask for names)."""
    missing = _missing_hop(task, seen)
    if missing is not None:
        query = hop_query(missing)
        need = f"I still need {missing.subject_name}'s {missing.relation.replace('_', ' ')}."
        return f"{need} Next I look up: {query}.", f"<search>{query}</search>"
    if task.calculation and not computed:
        return f"Every value the question needs has been found. I compute {task.calculation}.", (
            f"<calculate>{task.calculation}</calculate>"
        )
    return f"Every fact the question needs has been found. So the answer is {task.answer}.", (
        f"<answer>{task.answer}</answer>"
    )


def refine_steps(steps: list[Step], task: Task, ratings: list[int]) -> list[dict]:
    """For each step rated below 5, the step the gold path needs there: {step, thought, action}."""
    gold = set(task.evidence_doc_ids)
    seen: set[str] = set()
    computed = False
    refined = []
    for step, rating in zip(steps, ratings, strict=True):
        if rating < 5:
            thought, action = _next_gold_step(task, seen, computed)
            refined.append({"step": step.index, "thought": thought, "action": action})
        seen |= gold & set(step.retrieved_doc_ids)
        computed |= step.action == "calculate" and not _tool_failed(step)
    return refined


def reference_judgements(trajectory: Trajectory, task: Task, answer: str | None) -> list[Judgement]:
    """The reference judge's step, process and usefulness verdicts on one trajectory."""
    steps = trajectory.steps
    ratings = rate_steps(steps, task)
    useful = search_usefulness(steps, task)
    common = {"trajectory_id": trajectory.id, "task_id": task.id, "judge": JUDGE_NAME}
    return [
        Judgement(
            **common,
            family="step",
            score=(sum(ratings) / len(ratings) - 1) / 4 if ratings else 0.0,
            step_ratings=ratings,
            refined_json=json.dumps(refine_steps(steps, task, ratings)),
        ),
        Judgement(
            **common,
            family="process",
            score=process_score(steps, task, answer),
            critique=critique(steps, task, answer),
        ),
        Judgement(
            **common, family="usefulness", score=sum(useful) / len(useful) if useful else 0.0, useful=useful
        ),
    ]
