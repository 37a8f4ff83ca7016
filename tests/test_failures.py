"""How a held-out answer went wrong, read from what each trajectory retrieved against the gold pages."""

import pytest

from storage.schemas import EvalRow, Hop, Step, Task
from tasks.evaluate.failures import failure_counts, failure_kind, failure_kinds
from tests.builders import make_trajectory

# A two-hop chain: the first page names the spouse, the spouse's page names the answer.
FIRST, SECOND, ELSEWHERE, BEYOND = "doc-person", "doc-spouse", "doc-twin", "doc-city"


def two_hop_task(task_id: str = "t") -> Task:
    hops = [
        Hop(subject="p1", subject_name="Ann", relation="married_to", object="p2", object_name="Bo", doc_id=FIRST),
        Hop(subject="p2", subject_name="Bo", relation="died_in", object="c1", object_name="Ost", doc_id=SECOND),
    ]  # fmt: skip
    return Task(
        id=task_id,
        question="Where did the spouse of Ann die?",
        answer="Ost",
        hops=hops,
        template="test",
        split="eval",
    )


def trajectory(searches: list[list[str]], answer: str | None, trajectory_id: str = "x", task_id: str = "t"):
    """One search step per entry (the doc ids it retrieved), then the answer (None: never answered)."""
    steps = [
        Step(index=i, thought="", action="search", argument=f"query {i}", retrieved_doc_ids=docs)
        for i, docs in enumerate(searches)
    ]
    if answer is not None:
        steps.append(Step(index=len(steps), thought="", action="answer", argument=answer))
    return make_trajectory(steps, trajectory_id, task_id, final_answer=answer)


@pytest.mark.parametrize(
    ("searches", "answer", "right", "kind"),
    [
        ([[FIRST], [SECOND]], "Ost", True, "right"),
        ([[FIRST], [SECOND]], None, False, "no_answer"),
        # the first search alone: the spouse's name given as the answer, a hop too short
        ([[FIRST]], "Bo", False, "stopped_short"),
        # a search that found no gold page (a misspelt name), then an answer without the spouse's page
        ([[FIRST], [ELSEWHERE]], "Twinville", False, "lost_the_path"),
        # both pages found, then one more search: the country of the city, a hop too many
        ([[FIRST], [SECOND], [BEYOND]], "Ostland", False, "went_past"),
        # both pages found by the first search (the spouse's page came second); searching on is past
        ([[FIRST, SECOND], [SECOND]], "Ostland", False, "went_past"),
        # both pages in hand and nothing searched after them, yet a wrong answer
        ([[FIRST], [SECOND]], "Bo", False, "misread"),
        # a search that found only a page already seen (the wrong relation asked of the same person)
        # did not move along the chain: lost too
        ([[FIRST], [FIRST]], "Bo", False, "lost_the_path"),
    ],
)
def test_each_way_of_going_wrong_is_told_apart(searches, answer, right, kind):
    assert failure_kind(trajectory(searches, answer), two_hop_task(), right) == kind


def test_tasks_without_gold_pages_are_unknown_and_supporting_pages_count_as_gold():
    bare = two_hop_task().model_copy(update={"hops": []})
    assert failure_kind(trajectory([[FIRST]], "Bo"), bare, False) == "unknown"
    asked = bare.model_copy(update={"supporting": [SECOND]})
    assert failure_kind(trajectory([[SECOND], [BEYOND]], "Ostland"), asked, False) == "went_past"
    assert failure_kind(trajectory([[FIRST]], "Bo"), asked, False) == "lost_the_path"


def test_only_the_greedy_sample_is_classified_and_counts_list_every_kind():
    tasks = {"a": two_hop_task("a"), "b": two_hop_task("b"), "c": two_hop_task("c")}
    trajectories = {
        "a0": trajectory([[FIRST], [SECOND], [BEYOND]], "Ostland", "a0", "a"),
        "a1": trajectory([[FIRST], [SECOND]], "Ost", "a1", "a"),
        "b0": trajectory([[FIRST], [SECOND]], "Ost", "b0", "b"),
    }

    def row(task_id: str, index: int, right: bool, trajectory_id: str) -> EvalRow:
        return EvalRow(
            task_id=task_id,
            trajectory_id=trajectory_id,
            policy="p",
            sample_index=index,
            exact_match=float(right),
            f1=float(right),
            tool_calls=2,
            valid_format=True,
        )

    # listed later sample first: the kind must come from sample 0, which pass@1 scores
    rows = [row("a", 1, True, "a1"), row("a", 0, False, "a0"), row("b", 0, True, "b0")]
    rows.append(row("c", 0, False, "missing"))  # a backend failure leaves no trajectory
    kinds = failure_kinds(rows, trajectories, tasks)
    assert kinds == {"a": "went_past", "b": "right", "c": "no_answer"}
    counts = failure_counts(kinds)
    assert list(counts)[:2] == ["right", "no_answer"] and counts["misread"] == 0
    assert sum(counts.values()) == 3 and counts["went_past"] == 1
