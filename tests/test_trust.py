"""The trust promises: ids move when results would, evaluation is honest, no failure is lost, and a
rebuild never replaces what it should not. Each test names the promise it holds the code to."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi import Request, Response
from pydantic import ValidationError

from flows.rebuild import RecipeChanged, rebuild
from flows.stages import local_stage_runner
from storage import ArtifactStore, Catalog
from storage.catalog import id_key
from storage.schemas import Failure, Task, Trajectory
from storage.store import ArtifactInUse, write_table
from tasks.agent.collect import ShardConfig
from tasks.agent.environment import ToolConfig, execute_turns
from tasks.agent.loop import AgentConfig, run_agent
from tasks.agent.oracle import oracle_trajectory
from tasks.agent.protocol import ParsedTurn
from tasks.corpus.world import WorldConfig
from tasks.evaluate.summary import EvalConfig, evaluate_policy, pass_at_k
from tasks.llm.hf import Generation
from tasks.llm.models import BaseModelConfig, build_tiny
from tasks.search.client import RemoteSearchTool
from tasks.search.server import create_app
from tasks.search.tools import SearchTool
from tasks.stage import get_stage, stage_artifact_id
from tasks.synthesis.evidence import hop_query, load_tasks
from tasks.synthesis.stage import SynthesisConfig, gold_facts, synthesize
from tasks.train.sft import PromptFormatMismatch, check_prompt_format
from tests.test_retriever_server import running

REPO = Path(__file__).resolve().parents[1]


class AnsweringPolicy:
    """Searches the first hop, then answers each task right; fails generation for chosen questions."""

    def __init__(self, tasks: list[Task], failing: set[str] = frozenset()):
        self.answers = {t.question: t.answer for t in tasks}
        self.first_query = {t.question: hop_query(t.hops[0]) for t in tasks}
        self.failing = failing

    def render(self, messages):
        return json.dumps(messages)

    def count_tokens(self, text):
        return len(text) // 4

    def generate(self, prompts, *, max_new_tokens, temperature, seed, stop):
        out = []
        for prompt in prompts:
            messages = json.loads(prompt)
            question = messages[1]["content"].removeprefix("Question: ")
            if question in self.failing:
                out.append(Generation("", 0, 0.0, error="HTTP 503: backend gave up"))
            elif len(messages) == 2:
                out.append(Generation(f"<search>{self.first_query[question]}</search>", 4, 0.0))
            else:
                out.append(Generation(f"<answer>{self.answers[question]}</answer>", 4, 0.0))
        return out


# --- ids that change when results would ---------------------------------------------------------


def _code_version(root: Path, *stages: str) -> str:
    """The code versions of ``stages`` under the source at ``root``, one per line."""
    script = f"from tasks.stage import get_stage\nfor s in {stages!r}: print(get_stage(s).code_version)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_editing_code_a_stage_runs_changes_its_id_and_a_comment_does_not(tmp_path):
    for package in ("tasks", "storage"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = _code_version(tmp_path, "annotate")
    outcome = tmp_path / "tasks" / "rewards" / "outcome.py"
    source = outcome.read_text()

    outcome.write_text("# a comment and a docstring change nothing that runs\n" + source)
    assert _code_version(tmp_path, "annotate") == before

    outcome.write_text(source.replace("def ", "def _unused():\n    return 1\n\n\ndef ", 1))
    after = _code_version(tmp_path, "annotate")
    assert after != before
    assert _code_version(tmp_path, "world") == _code_version(REPO, "world")  # does not reach outcome.py


def test_adding_a_stage_or_changing_the_runner_keeps_every_stage_s_id(tmp_path):
    """Stage modules import what a stage is (tasks.stage_spec), not the runner and its registry:
    registering one more stage, or retrying on one more error, must not rebuild every store."""
    for package in ("tasks", "storage"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    stages = ("world", "synthesize", "collect-shard", "annotate", "train", "evaluate", "questions")
    before = _code_version(tmp_path, *stages)
    runner = tmp_path / "tasks" / "stage.py"
    source = runner.read_text()
    registry = '    "world": "tasks.corpus.world:STAGE",\n'
    assert registry in source and '"ArtifactInUse"' in source
    source = source.replace(registry, registry + '    "my-stage": "tasks.corpus.world:STAGE",\n')
    runner.write_text(source.replace('"ArtifactInUse"', '"ArtifactInUse", "MyTransientError"'))
    assert _code_version(tmp_path, *stages) == before


def test_the_same_model_path_with_new_weights_gets_a_new_id(tmp_path):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    build_tiny(0, model_dir)
    stage = get_stage("base-model")
    config = BaseModelConfig(spec=f"hf:{model_dir}")
    first = stage_artifact_id(stage, config, {})
    assert stage_artifact_id(stage, config, {}) == first
    for item in model_dir.iterdir():
        item.unlink()
    build_tiny(1, model_dir)  # other weights, same path
    assert stage_artifact_id(stage, config, {}) != first


def test_settings_that_cannot_change_a_result_stay_out_of_ids(tiny_model, index_ref, tasks_ref):
    inputs = {"model": tiny_model, "tasks": tasks_ref, "index": index_ref}
    shard, evaluate = get_stage("collect-shard"), get_stage("evaluate")
    plain = ShardConfig(shard_index=0, shard_size=4)
    tuned = ShardConfig(shard_index=0, shard_size=4, agent={"refine": {"threshold": 5, "max_refines": 9}})
    assert stage_artifact_id(shard, plain, inputs) == stage_artifact_id(shard, tuned, inputs)
    refined = ShardConfig(shard_index=0, shard_size=4, agent={"refine": {"mode": "rate-and-refine"}})
    assert stage_artifact_id(shard, refined, inputs) != stage_artifact_id(shard, plain, inputs)

    greedy = stage_artifact_id(evaluate, EvalConfig(temperature=0.3), inputs)
    assert greedy == stage_artifact_id(evaluate, EvalConfig(temperature=0.9), inputs)
    sampled = stage_artifact_id(evaluate, EvalConfig(samples_per_task=2, temperature=0.3), inputs)
    assert sampled != stage_artifact_id(evaluate, EvalConfig(samples_per_task=2, temperature=0.9), inputs)

    with pytest.raises(ValidationError):
        get_stage("annotate").config_model(judge="my-favourite-judge")


def test_model_stage_ids_carry_the_precision_this_host_runs_in(tiny_model, index_ref, tasks_ref, monkeypatch):
    inputs = {"model": tiny_model, "tasks": tasks_ref, "index": index_ref}
    ids = {}
    for precision in ("fp32", "bf16"):
        monkeypatch.setenv("TRAILFORGE_PRECISION", precision)
        ids[precision] = {
            name: stage_artifact_id(get_stage(name), config, inputs)
            for name, config in (("evaluate", EvalConfig()), ("train", get_stage("train").config_model()))
        }
    assert ids["fp32"]["evaluate"] != ids["bf16"]["evaluate"] and ids["fp32"]["train"] != ids["bf16"]["train"]


# --- honest evaluation ----------------------------------------------------------------------------


def test_an_evaluation_config_with_a_refine_mode_is_refused():
    for mode in ("rate-and-refine", "cut-and-regenerate"):
        with pytest.raises(ValidationError, match="policy alone"):
            EvalConfig(agent={"refine": {"mode": mode}})


def test_a_generation_failure_in_evaluation_counts_as_a_failure(index_ref, tasks_ref):
    tasks = load_tasks(tasks_ref, "eval")
    tool = SearchTool(index_ref.uri)
    config = EvalConfig(samples_per_task=2, temperature=0.5, agent={"max_turns": 3})

    *_, all_right, none_failed = evaluate_policy(AnsweringPolicy(tasks), tool, tasks, config, "p")
    assert all_right.pass_at_1 == 1.0 and none_failed == []

    doomed = tasks[0]
    trajectories, rows, summary, failures = evaluate_policy(
        AnsweringPolicy(tasks, {doomed.question}), tool, tasks, config, "p"
    )
    assert summary.pass_at_1 == pytest.approx((len(tasks) - 1) / len(tasks))
    assert summary.failed == 2 and len(rows) == 2 * len(tasks)
    assert {(r.task_id, r.failed, r.exact_match) for r in rows if r.task_id == doomed.id} == {
        (doomed.id, True, 0.0)
    }
    # both samples' failures are recorded, under distinct keys, and the catalog keeps both
    assert [f.error_class for f in failures] == ["GenerationError", "GenerationError"]
    assert len({f.item_id for f in failures}) == 2


def test_two_failures_of_one_item_are_both_recorded(tmp_path):
    catalog = Catalog(tmp_path / "lineage.duckdb")
    same = Failure(stage="evaluate", item_id="t1#s0#r0#t0", error_class="GenerationError", message="a")
    again = same.model_copy(update={"message": "b"})
    catalog.record_failures(
        [same.model_copy(update={"artifact_id": "x"}), again.model_copy(update={"artifact_id": "x"})]
    )
    assert sorted(r["message"] for r in catalog.query("SELECT message FROM failures")) == ["a", "b"]


def test_pass_at_k_uses_the_unbiased_estimator_below_n():
    # n=4 samples, c=1 correct, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValidationError):
        EvalConfig(samples_per_task=2, pass_k=3)


def test_held_out_tasks_share_no_fact_with_training(world_ref, index_ref):
    from storage.schemas import Entity, Triple
    from storage.store import read_rows

    tasks = synthesize(
        read_rows(world_ref, Entity, "entities"),
        read_rows(world_ref, Triple, "triples"),
        SynthesisConfig(train_tasks=40, eval_tasks=20),
        SearchTool(index_ref.uri).search,
    )
    train = [t for t in tasks if t.split == "train"]
    held_out = [t for t in tasks if t.split == "eval"]
    assert len(train) == 40 and len(held_out) == 20
    train_facts = set().union(*(gold_facts(t) for t in train))
    assert all(not gold_facts(t) & train_facts for t in held_out)


def test_every_task_has_retrievable_evidence_and_the_oracle_opens_nothing_unseen(index_ref, tasks_ref):
    tool = SearchTool(index_ref.uri)
    for task in load_tasks(tasks_ref):
        trajectory, solved = oracle_trajectory(task, tool, ToolConfig())
        assert solved and trajectory.final_answer == task.answer
        seen: set[str] = set()
        for step in trajectory.steps:
            if step.action == "open":
                assert step.argument in seen
            seen |= set(step.retrieved_doc_ids)
        assert {h.doc_id for h in task.hops} <= seen

    task = load_tasks(tasks_ref)[0]
    hidden = task.model_copy(update={"hops": [task.hops[0].model_copy(update={"doc_id": "no-such-page"})]})
    assert oracle_trajectory(hidden, tool, ToolConfig()) == (None, False)


# --- no failure lost, no item sinks a shard ------------------------------------------------------


def test_a_retriever_outage_on_one_task_leaves_the_rest_of_the_batch_done(index_ref, tasks_ref):
    tasks = load_tasks(tasks_ref, "train")
    doomed_query = hop_query(tasks[1].hops[0])
    app = create_app(SearchTool(index_ref.uri))

    @app.middleware("http")
    async def outage(request: Request, call_next):
        if doomed_query.encode() in await request.body():
            return Response(status_code=503, content=b"shard offline")
        return await call_next(request)

    with running(app) as url:
        tool = RemoteSearchTool(url, max_retries=1, backoff_s=0.01)
        trajectories, failures = run_agent(
            AnsweringPolicy(tasks), tool, tasks, config=AgentConfig(max_turns=3), policy_name="p"
        )
    by_task = {t.task_id: t for t in trajectories}
    assert by_task[tasks[1].id].error is not None and by_task[tasks[1].id].final_answer is None
    done = [t for t in tasks if t.id != tasks[1].id]
    assert all(by_task[t.id].final_answer == t.answer and by_task[t.id].error is None for t in done)
    assert [(f.item_id.split("#")[0], f.error_class) for f in failures] == [(tasks[1].id, "RetrieverError")]


def test_a_calculator_overflow_is_an_observation_not_a_crash(index_ref):
    turns = [
        ParsedTurn("calculate", "(10.0**64)**64", "", ""),
        ParsedTurn("calculate", "((9**64)**64)**64", "", ""),
    ]
    observations = execute_turns(SearchTool(index_ref.uri), turns, ToolConfig())
    assert [o.error for o in observations] == ["CalculationError", "CalculationError"]
    assert not any(o.fatal for o in observations)


# --- one way to build and record; rebuilds that never lose an artifact ----------------------------


def test_a_rebuild_whose_recipe_changed_leaves_the_old_artifact_in_place(tmp_path, monkeypatch):
    import tasks.stage_spec

    world = WorldConfig(people=20, organisations=6, works=4, events=2, cities=6, countries=2)
    with local_stage_runner("test", {}, str(tmp_path)) as run:
        built = run("world", world, {})
    meta = (Path(built.uri) / "_meta.json").read_text()
    run_row = run.catalog.query("SELECT state FROM runs WHERE flow_run_id = ?", [run.flow_run_id])
    assert run_row == [{"state": "Completed"}]  # the CLI's builds are runs too

    monkeypatch.setattr(tasks.stage_spec, "code_version", lambda module: "a-newer-release")
    with local_stage_runner("retry", {}, str(tmp_path)) as run, pytest.raises(RecipeChanged):
        rebuild([built.id], run)
    assert (Path(built.uri) / "_meta.json").read_text() == meta


def test_an_artifact_being_read_is_not_replaced(tmp_path, monkeypatch):
    import storage.store

    monkeypatch.setattr(storage.store, "LOCK_WAIT_S", 0.2)
    store = ArtifactStore(tmp_path)
    with store.writing("tasks", "a" * 20, "synthesize", "{}") as work:
        write_table(work, [Failure(stage="s", item_id="i", error_class="E", message="m")])
    ref = store.ref("tasks", "a" * 20)
    reading, release = threading.Event(), threading.Event()

    def reader():
        with store.reading([ref]):
            reading.set()
            release.wait(10)

    thread = threading.Thread(target=reader)
    thread.start()
    reading.wait(10)
    try:
        with pytest.raises(ArtifactInUse):
            store.remove("tasks", ref.id)
        with pytest.raises(ArtifactInUse), store.writing("tasks", ref.id, "synthesize", "{}", replace=True):
            pass
        assert store.exists("tasks", ref.id)
    finally:
        release.set()
        thread.join()
    assert store.remove("tasks", ref.id) and not store.exists("tasks", ref.id)


def test_sweep_removes_dead_writers_leftovers_only(tmp_path):
    store = ArtifactStore(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = os.uname().nodename
    store.tmp.mkdir(parents=True)
    (store.tmp / f"{'b' * 20}.{host}.{dead.stdout.strip()}.0000aaaa").mkdir()
    (store.tmp / f"{'c' * 20}.{host}.{os.getpid()}.0000bbbb").mkdir()
    assert store.sweep_tmp() == 1
    assert [p.name.split(".")[0] for p in store.tmp.iterdir()] == ["c" * 20]


def test_lineage_walks_survive_keys_written_by_another_scheme(tmp_path):
    from storage.schemas import ArtifactRef

    catalog = Catalog(tmp_path / "lineage.duckdb")
    ids = [c * 20 for c in "abc"]
    refs = [ArtifactRef(id=i, kind="tasks", stage="s", uri="u") for i in ids]
    catalog.record(refs[0])
    catalog.record(refs[1], {"tasks": refs[0]})
    catalog.record(refs[2], {"tasks": refs[1]})
    keys = catalog.query("SELECT parent, parent_key FROM edges ORDER BY parent")
    assert [r["parent_key"] for r in keys] == [id_key(ids[0]), id_key(ids[1])]
    # a catalog written with other keys (DuckDB's own hash(), say) is rekeyed when opened
    with catalog.connect() as con:
        con.execute("UPDATE edges SET parent_key = 1, child_key = 2")
        con.execute("DELETE FROM settings")
    reopened = Catalog(tmp_path / "lineage.duckdb")
    assert [r["id"] for r in reopened.ancestors(ids[2])] == [ids[1], ids[0]]


def test_training_refuses_trajectories_rendered_with_another_template(tiny_model, index_ref, tasks_ref):
    task = load_tasks(tasks_ref, "train")[0]
    trajectory, _ = oracle_trajectory(task, SearchTool(index_ref.uri), ToolConfig())
    check_prompt_format([trajectory], tiny_model.uri)  # the oracle's protocol, no template: accepted
    policy_made = trajectory.model_copy(update={"template_digest": "0123456789abcdef"})
    with pytest.raises(PromptFormatMismatch, match="rendered differently"):
        check_prompt_format([trajectory, policy_made], tiny_model.uri)
    older_protocol = trajectory.model_copy(update={"protocol_digest": "fedcba9876543210"})
    with pytest.raises(PromptFormatMismatch):
        check_prompt_format([older_protocol], tiny_model.uri)
    assert isinstance(policy_made, Trajectory)


def test_prefect_retries_a_stage_only_for_errors_that_may_pass():
    from prefect.states import Failed

    from tasks.stage import retry_transient_only

    def retried(exc: BaseException) -> bool:
        return retry_transient_only(None, None, Failed(data=exc))

    assert retried(TimeoutError("read timed out")) and retried(ConnectionResetError())
    assert not retried(ValueError("the selection is empty: nothing to train on"))
    assert not retried(FileNotFoundError("no such model"))
    assert not retried(PromptFormatMismatch("rendered differently"))


def test_training_examples_are_rendered_like_prompts_and_their_masks_are_checked(
    tiny_model, index_ref, tasks_ref
):
    from transformers import AutoTokenizer

    from tasks.llm.chat import MaskError, render_prompt, tokenize_for_training

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.uri)
    trajectory, _ = oracle_trajectory(
        load_tasks(tasks_ref, "train")[0], SearchTool(index_ref.uri), ToolConfig()
    )
    messages = json.loads(trajectory.messages_json)
    example = tokenize_for_training(tokenizer, messages)
    # the prompt of every assistant turn is a token prefix of the training example
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = tokenizer(render_prompt(tokenizer, messages[:i]), add_special_tokens=False).input_ids
            assert example.input_ids[: len(prompt)] == prompt
            assert not any(
                example.assistant_masks[: len(prompt)][len(prompt) - 3 :]
            )  # the prompt is not trained on

    leaky = tokenizer.chat_template.replace(
        "{%- if message['role'] == 'assistant' -%}",
        "{%- generation -%}{%- if message['role'] == 'assistant' -%}",
        1,
    )
    leaky = leaky.replace(
        "{%- endif -%}\n{%- endfor -%}", "{%- endif -%}{%- endgeneration -%}\n{%- endfor -%}", 1
    )
    assert leaky != tokenizer.chat_template
    tokenizer.chat_template = leaky
    with pytest.raises(MaskError, match="trained on as if the policy wrote it"):
        tokenize_for_training(tokenizer, messages)
    with pytest.raises(MaskError, match="no token"):
        tokenize_for_training(AutoTokenizer.from_pretrained(tiny_model.uri), messages[:2])
