"""User question sets: checked with every problem located, resolved against the corpus, evaluated."""

from __future__ import annotations

import json

import pytest

from flows.corpus_source import ingest_questions
from storage.schemas import Trajectory
from tasks.corpus.questions import QuestionsConfig, QuestionsError, read_questions
from tasks.corpus.user import CorpusConfig, pin
from tasks.evaluate.summary import EvalConfig, evaluate_policy, summarize
from tasks.search.index import IndexConfig
from tasks.search.tools import SearchTool
from tasks.stage import execute_stage
from tasks.synthesis.evidence import load_tasks
from tests.policies import StatePolicy
from tests.test_user_corpus import write_three_files


def write_lines(path, lines) -> str:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


@pytest.fixture
def corpus(tmp_path, shared_store):
    directory = tmp_path / "corpus"
    directory.mkdir()
    write_three_files(directory)  # j1 Orvell Lighthouse, j2 Marrow Bay, j3 Tessin Pruel, c1, c2, p1
    return execute_stage("corpus", shared_store, pin(CorpusConfig(path=str(directory))), {})


def test_a_question_set_becomes_held_out_tasks_with_supporting_page_ids(tmp_path, shared_store, corpus):
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            {
                "id": "keeper",
                "question": "Who kept the lighthouse on the cape of Marrow Bay?",
                "answer": "Tessin Pruel",
                "aliases": ["Pruel"],
                "supporting": ["marrow  bay", "j1", "Tessin Pruel"],  # a title (any case), an id, a title
            },
            {"id": 7, "question": "How many years did he keep it?", "answer": 40},
        ],
    )
    ref = ingest_questions(shared_store, path, corpus)
    assert ref.kind == "tasks" and ref.rows == 2
    tasks = {t.id: t for t in load_tasks(ref, "eval")}
    assert tasks["keeper"].supporting == ["j2", "j1", "j3"]
    assert tasks["keeper"].aliases == ["Pruel"] and tasks["keeper"].hops == []
    assert (tasks["7"].answer, tasks["7"].supporting) == ("40", [])
    assert {(t.split, t.bucket) for t in tasks.values()} == {("eval", "user")}

    # content-addressed: the same bytes give the same artifact, an edit a new one
    assert ingest_questions(shared_store, path, corpus).id == ref.id
    write_lines(tmp_path / "q.jsonl", [{"id": "x", "question": "Where is Saltmere?", "answer": "north"}])
    assert ingest_questions(shared_store, path, corpus).id != ref.id


def test_every_problem_is_located_with_its_field_and_nothing_is_stored(tmp_path, shared_store, corpus):
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            {"id": "ok", "question": "Where does Ferrow Pass lead?", "answer": "the uplands"},
            {"id": "a", "question": "Who sold flour?"},
            '{"id": "b", "question": ',
            {"id": "c", "question": "   ", "answer": "x"},
            {"id": "ok", "question": "Again?", "answer": "y"},
            {"id": "d", "question": "Q?", "answer": "z", "aliases": 5},
        ],
    )
    with pytest.raises(QuestionsError) as error:
        read_questions(QuestionsConfig(path=path))
    message = str(error.value)
    assert "5 invalid record(s)" in message
    assert f"{path}:2: missing field 'answer'" in message
    assert f"{path}:3: invalid JSON" in message
    assert f"{path}:4: field 'question' is empty" in message
    assert f"{path}:5: duplicate id 'ok' (first at {path}:1)" in message
    assert f"{path}:6: field 'aliases':" in message

    before = set(shared_store.artifacts.rglob("_meta.json"))
    unknown = write_lines(
        tmp_path / "pages.jsonl",
        [
            {"id": "1", "question": "Q1?", "answer": "a", "supporting": ["Marrow Bay"]},
            {"id": "2", "question": "Q2?", "answer": "b", "supporting": ["Atlantis", "j2"]},
        ],
    )
    with pytest.raises(QuestionsError) as error:
        ingest_questions(shared_store, unknown, corpus)
    assert f"{unknown}:2: field 'supporting': 'Atlantis' is neither the id nor the title" in str(error.value)
    assert "1 invalid record(s)" in str(error.value)
    assert set(shared_store.artifacts.rglob("_meta.json")) == before


def test_a_csv_question_set_holds_lists_as_json_or_bars(tmp_path, shared_store, corpus):
    (tmp_path / "q.csv").write_text(
        "id,question,answer,aliases,supporting\n"
        'q1,Who sold flour at the mill?,Tessin Pruel,Pruel|T. Pruel,"[""Quillon Mill"", ""j3""]"\n'
        "q2,Which village lies north of Marrow Bay?,Saltmere,,\n",
        encoding="utf-8",
    )
    tasks = {t.id: t for t in load_tasks(ingest_questions(shared_store, tmp_path / "q.csv", corpus))}
    assert tasks["q1"].aliases == ["Pruel", "T. Pruel"] and tasks["q1"].supporting == ["c1", "j3"]
    assert tasks["q2"].aliases == [] and tasks["q2"].supporting == []


def test_evaluation_takes_the_set_and_scores_the_share_of_supporting_pages_retrieved(
    tmp_path, shared_store, corpus
):
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            {
                "id": "q1",
                "question": "Who keeps the lighthouse?",
                "answer": "Tessin Pruel",
                "supporting": ["j2", "j1"],
            },
            {
                "id": "q2",
                "question": "Who sold flour?",
                "answer": "Tessin Pruel",
                "supporting": ["Quillon Mill"],
            },
            {"id": "q3", "question": "Where does Ferrow Pass lead?", "answer": "the uplands"},
        ],
    )
    tasks = load_tasks(ingest_questions(shared_store, path, corpus), "eval")
    index = execute_stage("index", shared_store, IndexConfig(), {"corpus": corpus})

    def reply(messages, seed):  # open the lighthouse's page, then answer
        if messages[-1]["role"] == "user":
            return "<think>read it</think><open>j1</open>"
        return "<answer>Tessin Pruel</answer>"

    trajectories, rows, summary, _ = evaluate_policy(
        StatePolicy(reply), SearchTool(index.uri), tasks, EvalConfig(), "scripted"
    )
    assert all(isinstance(t, Trajectory) and t.steps[0].retrieved_doc_ids == ["j1"] for t in trajectories)
    recall = {r.task_id: r.supporting_recall for r in rows}
    assert recall == {"q1": 0.5, "q2": 0.0, "q3": None}  # j1 of (j2, j1); not c1; none named
    assert summary.supporting_recall == pytest.approx(0.25)
    assert summary.pass_at_1 == pytest.approx(2 / 3)
    # tasks that name no supporting pages leave the summary without the measure
    assert summarize([r for r in rows if r.task_id == "q3"], "scripted", 1).supporting_recall is None
