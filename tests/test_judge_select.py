from storage.schemas import Annotation, Step
from tasks.judge.reference import rate_steps
from tasks.rewards.outcome import exact_match, normalize_answer, token_f1
from tasks.select.rejection import SelectConfig, select
from tasks.synthesis.evidence import load_tasks


def test_normalisation_and_scores():
    assert normalize_answer("The  Vaxny!") == "vaxny"
    assert exact_match("the vaxny", ["Vaxny"]) == 1.0
    assert exact_match(None, ["Vaxny"]) == 0.0
    assert 0 < token_f1("Vaxny City", ["Vaxny"]) < 1


def test_reference_ratings_follow_gold_evidence(tasks_ref):
    task = load_tasks(tasks_ref)[0]
    gold1, gold2 = task.evidence_doc_ids
    steps = [
        Step(index=0, thought="", action="search", argument="q", retrieved_doc_ids=["x", gold1]),
        Step(index=1, thought="", action="search", argument="q", retrieved_doc_ids=[gold1]),
        Step(index=2, thought="", action="search", argument="q", retrieved_doc_ids=["y"]),
        Step(index=3, thought="", action="open", argument=gold2, retrieved_doc_ids=[gold2]),
        Step(index=4, thought="", action="invalid", argument=""),
        Step(index=5, thought="", action="answer", argument=task.answer),
    ]
    assert rate_steps(steps, task) == [5, 3, 2, 5, 1, 5]
    wrong = Step(index=0, thought="", action="answer", argument="Nobody")
    assert rate_steps([wrong], task) == [1]


def ann(tid, task, policy="p", em=1.0, ratings=(5, 5, 5)):
    return Annotation(
        trajectory_id=tid,
        task_id=task,
        policy=policy,
        exact_match=em,
        f1=em,
        step_ratings=list(ratings),
        mean_rating=sum(ratings) / len(ratings),
        min_rating=min(ratings),
        tool_calls=len(ratings) - 1,
        judge="reference",
    )


def test_selection_keeps_good_correct_trajectories_and_falls_back_to_oracle():
    annotations = [
        ann("good", "t1"),
        ann("good2", "t1", ratings=(5, 3, 5)),
        ann("good3", "t1", ratings=(5, 5, 5, 5)),
        ann("wrong", "t2", em=0.0),
        ann("bad-step", "t2", ratings=(5, 1, 5)),
        ann("low", "t2", ratings=(2, 3, 5)),
        ann("oracle-t1", "t1", policy="oracle"),
        ann("oracle-t2", "t2", policy="oracle"),
    ]
    chosen = {
        (s.trajectory_id, s.source)
        for s in select(annotations, SelectConfig(max_per_task=2, oracle_fallback=True))
    }
    assert chosen == {("good", "policy"), ("good3", "policy"), ("oracle-t2", "oracle")}
    no_fallback = select(annotations, SelectConfig(max_per_task=1, oracle_fallback=False))
    assert [s.trajectory_id for s in no_fallback] == ["good"]
