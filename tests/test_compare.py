"""``trailforge compare``: the tasks that flipped between two hand-made evaluations, per bucket."""

import json
import uuid

import pytest

from flows.cli import main
from storage import ArtifactStore, Catalog
from storage.schemas import EvalRow, Step, Task
from storage.store import write_table
from tests.builders import make_trajectory

EASY, CONVERGING, TOOL = "h2-k1-m2", "h3-k2-m2", "h3-k1-m2"


def task(task_id: str, bucket: str, calculation: str = "") -> Task:
    return Task(
        id=task_id,
        question=f"Which city did the founder of {task_id} grow up in?",
        answer=f"gold-{task_id}",
        aliases=[f"alias-{task_id}"],
        hops=[],
        template="test",
        split="eval",
        bucket=bucket,
        calculation=calculation,
    )


def publish(store: ArtifactStore, catalog: Catalog, kind: str, tables: dict, parents: dict | None = None):
    """An artifact written the way stages write them, recorded in lineage the way flows record them."""
    artifact_id = uuid.uuid4().hex[:20]  # any hex id: these artifacts are written by hand, not by a stage
    stage = {"tasks": "synthesize", "evaluation": "evaluate"}[kind]
    with store.writing(kind, artifact_id, stage, "{}") as work:
        for name, rows in tables.items():
            write_table(work, rows, name=name)
    ref = store.ref(kind, artifact_id, reused=False)
    catalog.record(ref, parents or {})
    return ref


def evaluation(store, catalog, tasks_ref, policy: str, outcomes: dict[str, list[bool]]):
    """An evaluation of ``policy``: per task, whether each sample (0 is the greedy one) was right.

    Rows are written latest sample first, so only reading sample_index picks the greedy one.
    """
    rows, trajectories = [], []
    for task_id, samples in outcomes.items():
        for index in reversed(range(len(samples))):
            right = samples[index]
            answer = f"gold-{task_id}" if right else f"{policy}-guess"
            trajectory_id = f"{policy}-{task_id}-{index}"
            steps = [
                Step(index=0, thought="", action="search", argument=f"{policy} looks up {task_id}"),
                Step(index=1, thought="", action="answer", argument=answer),
            ]
            trajectories.append(
                make_trajectory(steps, trajectory_id, task_id, policy=policy, sample_index=index)
            )
            rows.append(
                EvalRow(
                    task_id=task_id,
                    trajectory_id=trajectory_id,
                    policy=policy,
                    sample_index=index,
                    exact_match=float(right),
                    f1=float(right),
                    tool_calls=1,
                    valid_format=True,
                )
            )
    return publish(
        store, catalog, "evaluation", {"data": rows, "trajectories": trajectories}, {"tasks": tasks_ref}
    )


@pytest.fixture
def two_evaluations(tmp_path):
    store = ArtifactStore(tmp_path)
    catalog = Catalog(store.catalog_path)
    shared = [task("t1", EASY), task("t2", EASY), task("t3", CONVERGING), task("t4", TOOL, "2020 - 1970")]
    shared.append(task("t5", CONVERGING))
    tasks_a = publish(store, catalog, "tasks", {"data": [*shared, task("t6", EASY)]})
    tasks_b = publish(store, catalog, "tasks", {"data": [*shared, task("t7", TOOL, "3 * 4")]})
    a = evaluation(
        store,
        catalog,
        tasks_a,
        "round0",
        # t5: the greedy sample is wrong and a later one right; pass@1 counts it wrong
        {"t1": [True], "t2": [False], "t3": [True], "t4": [False], "t5": [False, True], "t6": [True]},
    )
    b = evaluation(
        store,
        catalog,
        tasks_b,
        "round1",
        {"t1": [True], "t2": [True], "t3": [False], "t4": [True], "t5": [False], "t7": [False]},
    )
    return tmp_path, a, b


def test_compare_lists_exactly_the_flipped_tasks_per_bucket(two_evaluations, capsys):
    home, a, b = two_evaluations
    assert main(["compare", a.id, b.id, "--home", str(home), "--json", "--show", "3"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])

    flips = {f["task_id"]: f["direction"] for f in result["flips"]}
    assert flips == {"t2": "wrong_to_right", "t4": "wrong_to_right", "t3": "right_to_wrong"}
    assert result["compared"] == 5 and result["only_in_a"] == ["t6"] and result["only_in_b"] == ["t7"]
    assert (result["right_a"], result["right_b"]) == (2, 3)
    assert (result["wrong_to_right"], result["right_to_wrong"]) == (2, 1)
    assert result["tasks_a"] != result["tasks_b"]
    # paired on the 5 shared tasks: 3/5 - 2/5; two flips against one are a fair coin's split (p = 1)
    paired = result["paired"]
    assert paired["tasks"] == 5 and paired["difference"] == pytest.approx(0.2)
    assert paired["mcnemar_p"] == pytest.approx(1.0) and paired["ci_low"] < 0 < paired["ci_high"]
    assert "B − A +20.0 points" in out

    counts = {
        (s["dimension"], s["value"]): (
            s["tasks"],
            s["right_a"],
            s["right_b"],
            s["wrong_to_right"],
            s["right_to_wrong"],
        )
        for s in result["slices"]
    }
    assert counts == {
        ("bucket", EASY): (2, 1, 2, 1, 0),
        ("bucket", CONVERGING): (2, 1, 0, 0, 1),
        ("bucket", TOOL): (1, 0, 1, 1, 0),
        ("difficulty", "easy"): (3, 1, 3, 2, 0),
        ("difficulty", "hard"): (2, 1, 0, 0, 1),
        ("tool", "yes"): (1, 0, 1, 1, 0),
        ("tool", "no"): (4, 2, 2, 1, 1),
    }
    # each slice paired on its own tasks: easy gained 2 of 3 with none lost (McNemar p = 2 / 2**2)
    by_slice = {(s["dimension"], s["value"]): s["paired"] for s in result["slices"]}
    easy, hard = by_slice["difficulty", "easy"], by_slice["difficulty", "hard"]
    assert easy["difference"] == pytest.approx(2 / 3) and easy["mcnemar_p"] == pytest.approx(0.5)
    assert hard["difference"] == pytest.approx(-0.5) and hard["mcnemar_p"] == pytest.approx(1.0)
    # the hand-made tasks name no gold pages: a wrong answer's kind cannot be told, and is not guessed
    assert (result["failures_a"]["right"], result["failures_a"]["unknown"]) == (2, 3)
    assert (result["failures_b"]["right"], result["failures_b"]["unknown"]) == (3, 2)
    t4 = next(f for f in result["flips"] if f["task_id"] == "t4")
    assert (t4["kind_a"], t4["kind_b"]) == ("unknown", "right")
    assert t4["tool"] and (t4["answer_a"], t4["answer_b"]) == ("round0-guess", "gold-t4")
    assert (t4["trajectory_a"], t4["trajectory_b"]) == ("round0-t4-0", "round1-t4-0")

    # Side by side: the question, the gold answer with its alias, and each side's steps on one line.
    assert "only in A: 1, only in B: 1" in out
    assert "gold: gold-t4 | alias-t4" in out and task("t4", TOOL).question in out
    side_by_side = [line for line in out.splitlines() if "round0 looks up t4" in line]
    assert len(side_by_side) == 1 and "round1 looks up t4" in side_by_side[0]


def test_compare_without_show_prints_no_trajectories(two_evaluations, capsys):
    home, a, b = two_evaluations
    assert main(["compare", a.id, b.id, "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "looks up" not in out and "wrong → right (2)" in out and "right → wrong (1)" in out


def test_compare_refuses_unknown_or_unrecorded_evaluations(two_evaluations, capsys):
    home, a, _ = two_evaluations
    assert main(["compare", a.id, "0" * 20, "--home", str(home)]) == 2
    assert "no evaluation artifact" in capsys.readouterr().err

    # An evaluation with no lineage in the catalog: which tasks it scored is unknown, so no guess.
    store = ArtifactStore(home)
    orphan = "f" * 20
    with store.writing("evaluation", orphan, "evaluate", "{}") as work:
        write_table(work, [], name="data")
    assert main(["compare", a.id, orphan, "--home", str(home)]) == 2
    assert "records no tasks input" in capsys.readouterr().err
