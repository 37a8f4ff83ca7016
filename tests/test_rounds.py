"""The pieces that make rounds add up: filter tolls, hard-task oversampling, carried-forward training
sets, cold-start demonstrations per bucket, per-bucket scores with bootstrap intervals, the report."""

import json

import pytest

from flows.config import PipelineConfig
from flows.recipe import TaskSet
from storage import ArtifactStore
from storage.schemas import EvalRow, EvalSummary, Selection, Step, Task, Trajectory
from storage.store import write_table
from tasks.evaluate.buckets import bootstrap_interval, bucket_scores
from tasks.select.demonstrations import DemonstrationsConfig, choose_tasks
from tasks.select.rejection import (
    FILTERS,
    REBALANCED,
    SelectConfig,
    filter_rows,
    rebalanced,
    select_with_counts,
)
from tasks.train.sft import training_set
from tests.builders import make_trajectory
from tests.test_judge_select import ann

TASK_SET = TaskSet("world", "index", "tasks")  # what the flow tests below pass through unread


def traj(tid, task, actions, errors=()):
    steps = [
        Step(
            index=i, thought="", action=a, argument="x", tool_error="UnknownDocument" if i in errors else None
        )
        for i, a in enumerate(actions)
    ]
    return make_trajectory(steps, tid, task, temperature=0.8, final_answer="a", finished=True)


def test_every_filter_counts_what_it_removed_and_hard_tasks_are_oversampled():
    annotations = [
        # t1: solved in 3 of 4 samples; one low-rated step, one over the cap
        ann("t1-a", "t1"),
        ann("t1-b", "t1", ratings=(5, 2, 5)),
        ann("t1-c", "t1", ratings=(5, 4, 5)),
        ann("t1-wrong", "t1", em=0.0),
        # t2: solved once in 4 samples -> hard
        ann("t2-a", "t2", ratings=(4, 3, 4)),
        ann("t2-w1", "t2", em=0.0),
        ann("t2-w2", "t2", em=0.0),
        ann("t2-low", "t2", em=0.0, ratings=(3, 3, 3)),
        # t3: right but every step mediocre
        ann("t3-a", "t3", ratings=(3, 3, 4)),
        ann("oracle-t3", "t3", policy="oracle"),
    ]
    config = SelectConfig(max_per_task=1, hard_task_copies=3, hard_task_solve_rate=0.25)
    chosen, removed = select_with_counts(annotations, config)
    assert {s.trajectory_id: s.copies for s in chosen} == {"t1-a": 1, "t2-a": 3}
    assert removed["wrong_answer"] == 4
    assert removed["bad_step"] == 1
    assert removed["low_mean_rating"] == 1
    assert removed["over_max_per_task"] == 1  # t1-c lost to t1-a
    rows = filter_rows(9, removed, chosen)
    assert [r.remaining for r in rows][-1] == 2
    assert next(s for s in chosen if s.task_id == "t2").solve_rate == pytest.approx(0.25)


def test_balancing_gives_under_represented_buckets_their_pool_weight():
    # a pool of 8 tasks, half easy and half hard; the policy solved three easy tasks and one hard one
    buckets = {f"e{i}": "h2-k1-m2" for i in range(4)} | {f"h{i}": "h4-k1-m2" for i in range(4)}
    annotations = [ann(f"{t}-a", t, em=float(t in ("e0", "e1", "e2", "h0"))) for t in buckets]
    config = SelectConfig(max_per_task=1, balance_buckets=True, hard_task_solve_rate=0.0)
    chosen, _ = select_with_counts(annotations, config, buckets=buckets)
    copies = {s.task_id: s.copies for s in chosen}
    # the hard bucket weighs 1/4 of the kept copies and 1/2 of the pool: its one trajectory counts 2x,
    # the easy ones stay at 1 (over their share, never cut)
    assert copies == {"e0": 1, "e1": 1, "e2": 1, "h0": 2}
    capped = select_with_counts(
        annotations, config.model_copy(update={"max_bucket_copies": 1}), buckets=buckets
    )[0]
    assert {s.copies for s in capped} == {1}
    with pytest.raises(ValueError, match="buckets"):
        select_with_counts(annotations, config)


def test_rebalancing_weighs_the_whole_training_set_by_kind_of_question():
    # a pool of 8 tasks in one bucket, half asking for a country and half for a birthplace; one
    # demonstration of each kind is carried, and the policy solved three more country questions
    kinds = {f"c{i}": "h2-k1-m2/located_in" for i in range(4)} | {
        f"b{i}": "h2-k1-m2/born_in" for i in range(4)
    }
    demos = [
        Selection(trajectory_id=f"demo-{t}", task_id=t, source="oracle", reason="cold") for t in ("c0", "b0")
    ]
    kept = [
        Selection(trajectory_id=f"mine-{t}", task_id=t, source="policy", reason="ok")
        for t in ("c1", "c2", "c3")
    ]
    out = rebalanced(kept, demos, kinds, max_copies=16)
    # countries weigh 4 of 5 copies on a pool where they are half: the birthplace demonstration
    # is raised to 4 copies (a row of this selection), the countries keep theirs
    assert {(s.trajectory_id, s.copies, s.reason) for s in out} == {
        ("mine-c1", 1, "ok"), ("mine-c2", 1, "ok"), ("mine-c3", 1, "ok"), ("demo-b0", 4, REBALANCED)
    }  # fmt: skip
    capped = rebalanced(kept, demos, kinds, max_copies=2)
    assert [(s.trajectory_id, s.copies) for s in capped if s.reason == REBALANCED] == [("demo-b0", 2)]
    # already balanced (one country, one birthplace): nothing is raised
    mine_b1 = Selection(trajectory_id="mine-b1", task_id="b1", source="policy", reason="ok")
    even = rebalanced([mine_b1], demos[:1], kinds, max_copies=16)
    assert [(s.trajectory_id, s.copies) for s in even] == [("mine-b1", 1)]


def test_rebalanced_rows_raise_carried_copies_in_training_and_are_not_counted_as_kept(tmp_path):
    store = ArtifactStore(tmp_path)
    cold = _selection(store, "cold", [("demo-1", 1), ("demo-2", 1)])
    round_1 = store.root / "r1"
    round_1.mkdir()
    rows = [
        Selection(trajectory_id="mine-1", task_id="t", source="policy", reason="ok"),
        Selection(trajectory_id="demo-2", task_id="t", source="oracle", reason=REBALANCED, copies=3),
    ]
    write_table(round_1, rows)
    write_table(round_1, [traj("mine-1", "t", ["answer"])], name="trajectories")
    ids = [t.id for t in training_set([cold, round_1])]
    assert sorted(ids) == ["demo-1", "demo-2", "demo-2", "demo-2", "mine-1"]
    assert filter_rows(1, dict.fromkeys(FILTERS, 0), rows)[-1].remaining == 1


def test_ties_go_to_fewer_tool_errors_then_shorter_paths():
    annotations = [ann("long", "t"), ann("errors", "t"), ann("short", "t", ratings=(5, 5))]
    trajectories = {
        "long": traj("long", "t", ["search", "search", "answer"]),
        "errors": traj("errors", "t", ["open", "search", "answer"], errors={0}),
        "short": traj("short", "t", ["search", "answer"]),
    }
    config = SelectConfig(max_per_task=3)
    chosen, _ = select_with_counts(annotations, config, trajectories=trajectories)
    assert [s.trajectory_id for s in chosen] == ["short", "long", "errors"]


def _selection(store: ArtifactStore, name: str, rows: list[tuple[str, int]]):
    work = store.root / name
    work.mkdir(parents=True)
    write_table(
        work,
        [Selection(trajectory_id=t, task_id="t", source="policy", reason="r", copies=c) for t, c in rows],
    )
    write_table(work, [traj(t, "t", ["answer"]) for t, _ in rows], name="trajectories")
    return work


def test_training_set_carries_selections_forward_with_their_copies(tmp_path):
    store = ArtifactStore(tmp_path)
    cold = _selection(store, "cold", [("demo-1", 1), ("demo-2", 1)])
    round_1 = _selection(store, "r1", [("mine-1", 2), ("demo-1", 1)])
    ids = [t.id for t in training_set([cold, round_1])]
    assert sorted(ids) == ["demo-1", "demo-2", "mine-1", "mine-1"]


def _task(tid, bucket):
    return Task(id=tid, question="q", answer="a", hops=[], template="t", split="train", bucket=bucket)


def test_cold_start_demonstrations_are_spread_over_buckets_in_proportion():
    tasks = [_task(f"a{i}", "h2-k1-m2") for i in range(30)] + [_task(f"b{i}", "h3-k2-m2") for i in range(10)]
    available = {t.id for t in tasks} - {"a0"}
    chosen = choose_tasks(tasks, available, DemonstrationsConfig(tasks=8))
    assert len(chosen) == 8 and "a0" not in chosen
    assert sum(c.startswith("b") for c in chosen) == 2  # 10 of 39 available -> 2 of 8
    assert choose_tasks(tasks, available, DemonstrationsConfig()) == sorted(available)
    assert chosen != choose_tasks(tasks, available, DemonstrationsConfig(tasks=8, seed=1))


def _row(task, em):
    return EvalRow(
        task_id=task, trajectory_id=task, policy="p", sample_index=0, exact_match=em, f1=em,
        tool_calls=2, valid_format=True,
    )  # fmt: skip


def test_scores_by_bucket_with_bootstrap_intervals():
    tasks = {f"e{i}": _task(f"e{i}", "h2-k1-m2") for i in range(20)}
    tasks |= {f"h{i}": _task(f"h{i}", "h3-k2-m2") for i in range(10)}
    tasks["c"] = _task("c", "h3-k1-m2").model_copy(update={"calculation": "2000-1950"})
    rows = [_row(t, 1.0 if t.startswith("e") and int(t[1:]) < 15 else 0.0) for t in tasks]
    scores = {(s.dimension, s.value): s for s in bucket_scores(rows, tasks)}
    easy = scores[("bucket", "h2-k1-m2")]
    assert easy.tasks == 20 and easy.pass_at_1 == 0.75
    assert easy.ci_low < 0.75 < easy.ci_high and easy.ci_high - easy.ci_low < 0.5
    assert scores[("bucket", "h3-k2-m2")].pass_at_1 == 0.0
    assert scores[("difficulty", "hard")].tasks == 10 and scores[("tool", "yes")].tasks == 1
    assert scores[("hops", "3")].tasks == 11
    assert bootstrap_interval([1.0, 1.0]) == (1.0, 1.0)
    narrow = bootstrap_interval([1.0] * 150 + [0.0] * 50)
    wide = bootstrap_interval([1.0] * 15 + [0.0] * 5)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_round_one_without_cold_start_or_fallback_fails_before_any_work():
    with pytest.raises(ValueError, match="oracle_fallback"):
        PipelineConfig.model_validate({"cold_start": {"source": "none"}})
    with pytest.raises(ValueError, match="cold_start.teacher"):
        PipelineConfig.model_validate({"cold_start": {"source": "teacher"}})


def test_the_report_plots_every_round(tmp_path):
    from flows.report import RoundEntry, build_report
    from flows.round_plot import plot_rounds
    from tasks.evaluate.buckets import BucketScore

    def entry(label, p):
        summary = EvalSummary(
            policy=label, tasks=10, samples_per_task=1, pass_at_1=p, pass_at_k=p, exact_match=p, f1=p,
            tool_calls=2.0, format_valid=1.0, ci_low=max(p - 0.1, 0), ci_high=min(p + 0.1, 1),
        )  # fmt: skip
        bucket = BucketScore(
            dimension="bucket",
            value="h2-k1-m2",
            tasks=10,
            pass_at_1=p,
            ci_low=0,
            ci_high=1,
            f1=p,
            tool_calls=2,
        )
        right = {f"t{i}": i < round(10 * p) for i in range(10)}
        return RoundEntry(
            label=label, summary=summary, evaluation_id=label, buckets=[bucket], greedy_right=right
        )

    report = build_report([entry("base", 0.0), entry("cold start", 0.3), entry("round 1", 0.4)], [], 1.0)
    path = plot_rounds(report, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = report.table()
    assert "round 1" in table and "40%" in table
    dumped = json.loads(report.model_dump_json())
    assert dumped["rounds"][2]["label"] == "round 1" and "greedy_right" not in dumped["rounds"][2]

    # each policy against the one before it, task by task: three tasks gained out of three flips is
    # p = 2 / 2**3 for the exact McNemar test; one gained and none lost is p = 1
    cold, first = (report.rounds[i].versus_previous for i in (1, 2))
    assert report.rounds[0].versus_previous is None
    assert (cold.wrong_to_right, cold.right_to_wrong, cold.mcnemar_p) == (3, 0, pytest.approx(0.25))
    assert (first.wrong_to_right, first.right_to_wrong, first.mcnemar_p) == (1, 0, pytest.approx(1.0))
    assert "base → cold start" in table and "+30.0" in table
    assert "| cold start → round 1 | +10.0 |" in report.markdown()
    assert "how the held-out answers went" not in table  # entries made without their tasks

    # with the kinds of each greedy answer: only kinds some policy shows get a column
    report.rounds[1].failures = {"right": 3, "no_answer": 0, "went_past": 7, "misread": 0}
    report.rounds[2].failures = {"right": 4, "no_answer": 0, "went_past": 2, "misread": 4}
    markdown = report.markdown()
    assert "| | right | went_past | misread |" in markdown and "| round 1 | 4 | 2 | 4 |" in markdown
    assert "no_answer" not in markdown and "| base |" not in markdown.split("answers went")[1].split("##")[0]


def test_rounds_can_sample_only_the_tasks_without_a_demonstration(
    shared_store, tasks_ref, index_ref, tiny_model
):
    """Demonstrated tasks are skipped; a task kept in an earlier round is sampled again, and the
    pipeline refuses a cold start that leaves nothing to sample."""
    from storage import ArtifactStore
    from storage.store import read_rows
    from tasks.agent.collect import ShardConfig, undemonstrated
    from tasks.agent.oracle import OracleConfig
    from tasks.stage import execute_stage
    from tasks.synthesis.evidence import load_tasks

    oracle = execute_stage(
        "collect-oracle", shared_store, OracleConfig(), {"tasks": tasks_ref, "index": index_ref}
    )
    demos = execute_stage(
        "demonstrations",
        shared_store,
        DemonstrationsConfig(tasks=3),
        {"demonstrations": oracle, "tasks": tasks_ref},
    )
    demonstrated = {s.task_id for s in read_rows(demos, Selection)}
    train = load_tasks(tasks_ref, "train")
    assert len(demonstrated) == 3 and demonstrated < {t.id for t in train}

    store = ArtifactStore(shared_store.root / "skip-demonstrated")
    agent = {"max_turns": 1, "max_new_tokens": 8}
    config = ShardConfig(
        shard_index=0, shard_size=100, samples_per_task=1, agent=agent, skip_demonstrated=True
    )
    inputs = {"model": tiny_model, "tasks": tasks_ref, "index": index_ref, "demonstrations": [demos]}
    shard = execute_stage("collect-shard", store, config, inputs)
    sampled = [t.task_id for t in read_rows(shard, Trajectory)]
    assert sorted(sampled) == sorted({t.id for t in train} - demonstrated)

    kept_before = next(t for t in train if t.id not in demonstrated)
    earlier = store.root / "earlier-round"
    earlier.mkdir()
    write_table(
        earlier,
        [
            Selection(
                trajectory_id="x", task_id=kept_before.id, source="policy", reason="correct_and_well_rated"
            )
        ],
    )
    earlier_ref = demos.model_copy(update={"id": "earlier-round", "uri": str(earlier)})
    assert kept_before in undemonstrated(train, [demos, earlier_ref])

    # the flow shards exactly the undemonstrated tasks, whichever carried selection comes first
    from flows.recipe import TaskSet, collect

    class Recorder:
        def map(self, stage, calls):
            self.calls = calls
            return []

        def __call__(self, stage, config, inputs, label):
            return None

    recorder = Recorder()
    pipeline = PipelineConfig.model_validate(
        {
            "synthesis": {"train_tasks": len(train)},
            "cold_start": {"tasks": 3},
            "collect": {"skip_demonstrated": True, "shard_size": 1},
        }
    )
    carried = [earlier_ref.model_copy(update={"rows": 1}), demos]  # a round's selection first: 1 row
    collect(recorder, pipeline, tiny_model, TaskSet(index_ref, index_ref, tasks_ref), 1, carried)
    assert len(recorder.calls) == len(train) - 3

    with pytest.raises(ValueError, match="skip_demonstrated leaves the rounds no task"):
        PipelineConfig.model_validate({"collect": {"skip_demonstrated": True}})
    PipelineConfig.model_validate({"collect": {"skip_demonstrated": True}, "cold_start": {"tasks": 32}})


def _first_pass(
    store: ArtifactStore, like, rows: list[tuple[str, str | None, str | None]], name="first-pass"
):
    """A hand-made first-pass shard: (task id, final answer, backend error) per rollout."""
    directory = store.root / name
    directory.mkdir(parents=True)
    trajectories = []
    for i, (task_id, answer, error) in enumerate(rows):
        t = traj(f"first-{i}", task_id, [])
        trajectories.append(t.model_copy(update={"final_answer": answer, "error": error}))
    write_table(directory, trajectories)
    return like.model_copy(
        update={"id": name, "kind": "trajectory-shard", "uri": str(directory), "rows": len(rows)}
    )


def test_resampling_goes_to_the_tasks_the_first_rollouts_rarely_solved(
    shared_store, tasks_ref, index_ref, tiny_model
):
    """Right means selection's exact match (an alias counts, a backend failure does not); unsampled
    tasks are never resampled; the flow resamples with its own seed, numbering samples on."""
    from storage.store import read_rows
    from tasks.agent.collect import RESAMPLE_SEED_OFFSET, ShardConfig, unsolved
    from tasks.stage import execute_stage
    from tasks.synthesis.evidence import load_tasks

    train = load_tasks(tasks_ref, "train")
    twice, once, never, failed, unsampled = train[:5]
    alias = twice.aliases[0] if twice.aliases else twice.answer.upper()
    store = ArtifactStore(shared_store.root / "resample")
    first = _first_pass(
        store,
        tasks_ref,
        [
            (twice.id, twice.answer, None),
            (twice.id, alias, None),
            (once.id, once.answer, None),
            (once.id, "somewhere else", None),
            (never.id, None, None),
            (never.id, "nobody", None),
            (failed.id, failed.answer, "BackendError: gave up"),
        ]
        + [(t.id, t.answer, None) for t in train[5:] for _ in range(2)],
    )
    assert unsolved(train, [first], 1) == [never, failed]
    assert unsolved(train, [first], 2) == [once, never, failed]
    assert unsampled not in unsolved(train, [first], 99)

    agent = {"max_turns": 1, "max_new_tokens": 8}
    config = ShardConfig(
        shard_index=0,
        shard_size=100,
        samples_per_task=2,
        agent=agent,
        resample_below=2,
        first_sample_index=2,
        seed=RESAMPLE_SEED_OFFSET,
    )
    inputs = {"model": tiny_model, "tasks": tasks_ref, "index": index_ref, "sampled": [first]}
    shard = execute_stage("collect-shard", store, config, inputs)
    rollouts = read_rows(shard, Trajectory)
    assert sorted((t.task_id, t.sample_index) for t in rollouts) == sorted(
        (t.id, i) for t in (once, never, failed) for i in (2, 3)
    )

    from flows.recipe import TaskSet, collect

    class Recorder:
        def __init__(self, first_pass=first):
            self.first_pass, self.maps, self.merged = first_pass, [], None

        def map(self, stage, calls):
            self.maps.append(calls)
            return [self.first_pass] if len(self.maps) == 1 else [shard]

        def __call__(self, stage, config, inputs, label):
            self.merged = inputs["shards"]

    recorder = Recorder()
    pipeline = PipelineConfig.model_validate(
        {
            "synthesis": {"train_tasks": len(train)},
            "collect": {"shard_size": 2, "resample": 3, "resample_below": 1, "seed": 5},
        }
    )
    collect(recorder, pipeline, tiny_model, TaskSet(index_ref, index_ref, tasks_ref), 2)
    resampled = [c for c, _, _ in recorder.maps[1]]
    assert len(resampled) == 1  # the one first-pass shard's resampling shard
    assert resampled[0].seed == 5 + 1 + RESAMPLE_SEED_OFFSET and resampled[0].samples_per_task == 3
    assert (resampled[0].first_sample_index, resampled[0].resample_below) == (2, 1)
    assert recorder.maps[1][0][1]["sampled"] == [first]
    assert recorder.merged == [first, shard]

    # a first pass that solved every task leaves nothing to resample
    all_right = _first_pass(store, tasks_ref, [(t.id, t.answer, None) for t in train], name="all-right")
    recorder = Recorder(all_right)
    collect(recorder, pipeline, tiny_model, TaskSet(index_ref, index_ref, tasks_ref), 1)
    assert len(recorder.maps) == 1 and recorder.merged == [all_right]

    plain = PipelineConfig.model_validate({"synthesis": {"train_tasks": len(train)}})
    recorder = Recorder()
    collect(recorder, plain, tiny_model, TaskSet(index_ref, index_ref, tasks_ref), 1)
    assert len(recorder.maps) == 1 and recorder.merged == [first]

    with pytest.raises(ValueError, match="temperature 0 would repeat"):
        PipelineConfig.model_validate({"collect": {"resample": 2, "temperature": 0}})
    with pytest.raises(ValueError, match="every task would be resampled"):
        PipelineConfig.model_validate({"collect": {"resample": 2, "resample_below": 3}})


def test_a_train_flag_changes_one_field_of_the_rounds_recipe_not_the_recipe():
    from flows.cli import build_parser, config_from_args

    parser, dests = build_parser()
    config = config_from_args(parser.parse_args(["run", "--train.max-steps", "16"]), dests)
    rounds = PipelineConfig().train
    assert config.train.max_steps == 16
    assert config.train.model_dump(exclude={"max_steps"}) == rounds.model_dump(exclude={"max_steps"})
    assert (config.train.learning_rate, config.train.lr_scheduler) != (2e-4, "cosine")


def test_each_round_can_take_its_own_steps():
    from flows.recipe import round_train

    config = PipelineConfig.model_validate({"rounds": 2})
    assert round_train(config, None, 2) == config.train
    second = round_train(config, [64, 140], 2)
    assert second.max_steps == 140 and second.learning_rate == config.train.learning_rate
    assert round_train(config, [64, 140], 1).max_steps == 64
    with pytest.raises(ValueError, match="3 step counts for 2 rounds"):
        round_train(config, [1, 2, 3], 1)


def test_rounds_trained_from_the_start_take_every_round_s_steps_so_far(monkeypatch):
    """train_from start: each round trains the policy round 1 collected with, on every selection so
    far, for every round's steps so far; round 1 is the same as a continued round 1, and later rounds
    still collect with the previous round's policy."""
    import flows.recipe as recipe
    from flows.cli import build_parser, config_from_args

    collected_with = []
    monkeypatch.setattr(
        recipe, "collect", lambda run, config, policy, *a, **k: collected_with.append(policy) or "rollouts"
    )
    monkeypatch.setattr(recipe, "annotate_and_select", lambda *a, **k: ("annotations", f"kept {a[5]}"))
    monkeypatch.setattr(recipe, "evaluate", lambda *a: "evaluation")

    def train_calls(train_from: str) -> list[tuple]:
        calls = []

        def run(stage, config, inputs, label):
            calls.append((inputs["model"], config.max_steps, inputs["selection"]))
            return f"{label} policy"

        config = PipelineConfig.model_validate({"rounds": 3, "train_from": train_from})
        collected_with.clear()
        recipe.run_rounds(run, config, "cold start", TASK_SET, ["demos"], [64, 32, 16])
        return calls

    continued = train_calls("previous")
    assert collected_with == ["cold start", "train r1 policy", "train r2 policy"]
    restarted = train_calls("start")
    assert collected_with == ["cold start", "train r1 policy", "train r2 policy"]
    assert restarted[0] == continued[0] == ("cold start", 64, ["demos", "kept r1"])
    assert [(model, steps) for model, steps, _ in continued[1:]] == [
        ("train r1 policy", 32),
        ("train r2 policy", 16),
    ]
    assert [(model, steps) for model, steps, _ in restarted[1:]] == [("cold start", 96), ("cold start", 112)]
    assert restarted[2][2] == continued[2][2] == ["demos", "kept r1", "kept r2", "kept r3"]

    parser, dests = build_parser()
    assert config_from_args(parser.parse_args(["run", "--train-from", "start"]), dests).train_from == "start"
    with pytest.raises(Exception, match="train_from"):
        PipelineConfig.model_validate({"train_from": "scratch"})


def test_the_control_arm_trains_the_cold_start_on_its_demonstrations_only(monkeypatch):
    """As many runs and steps as the rounds, on the cold-start data alone; a named control (another
    training seed) keeps its own labels and its config's seed."""
    import flows.recipe as recipe

    monkeypatch.setattr(recipe, "evaluate", lambda run, config, policy, task_set, label: (policy, label))
    calls = []

    def run(stage, config, inputs, label):
        calls.append((stage, inputs["model"], inputs["selection"], config.max_steps, config.seed, label))
        return f"{label} policy"

    start = recipe.ColdStart("demos", "cold start", "cold evaluation")
    config = PipelineConfig.model_validate({"rounds": 2, "train": {"seed": 7}})
    policy, evaluation = recipe.control_arm(run, config, start, None, [64, 32], "seed 7")
    assert calls == [
        ("train", "cold start", ["demos"], 64, 7, "train control seed 7 1"),
        ("train", "train control seed 7 1 policy", ["demos"], 32, 7, "train control seed 7 2"),
    ]
    assert evaluation == (policy, "evaluate control seed 7") and policy == "train control seed 7 2 policy"


@pytest.mark.parametrize("train_from", ["previous", "start"])
def test_rounds_retrained_with_another_seed_train_as_the_rounds_did_on_what_they_kept(
    monkeypatch, train_from
):
    """The same training calls as the rounds' own (the same cached artifacts under the rounds' config),
    on the same selections, under the retraining config's seed and labels of its own; nothing is
    collected again."""
    import flows.recipe as recipe

    monkeypatch.setattr(recipe, "collect", lambda *a, **k: "rollouts")
    monkeypatch.setattr(recipe, "annotate_and_select", lambda *a, **k: ("annotations", f"kept {a[5]}"))
    monkeypatch.setattr(recipe, "evaluate", lambda run, config, policy, task_set, label: (policy, label))

    def recorder(calls):
        def run(stage, config, inputs, label):
            calls.append((inputs["model"], inputs["selection"], config.max_steps, config.seed))
            return f"policy {len(calls)} of seed {config.seed}"

        return run

    config = PipelineConfig.model_validate({"rounds": 2, "train_from": train_from})
    own = []
    rounds = recipe.run_rounds(recorder(own), config, "cold start", TASK_SET, ["demos"], [64, 32])
    start = recipe.ColdStart("demos", "cold start", "cold evaluation")
    again = []
    retrained = recipe.retrained_rounds(recorder(again), config, start, TASK_SET, rounds, [64, 32])
    # afresh, only round 2's training makes the policy scored
    assert again == (own if train_from == "previous" else own[1:])
    seeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": 3})})
    calls = []
    policy, (scored, label) = recipe.retrained_rounds(
        recorder(calls), seeded, start, TASK_SET, rounds, [64, 32], "seed 3"
    )
    assert [(model, selection, steps) for model, selection, steps, _ in calls] == [
        (model if model == "cold start" else "policy 1 of seed 3", selection, steps)
        for model, selection, steps, _ in again
    ]
    assert {seed for *_, seed in calls} == {3} and scored == policy and label == "evaluate r2 seed 3"
    assert calls[-1][1] == ["demos", "kept r1", "kept r2"]
    assert retrained[0] == f"policy {len(again)} of seed 0"


def test_the_last_round_drawn_again_collects_anew_from_the_same_earlier_rounds(monkeypatch):
    """Under the rounds' config, the last round's own calls (its cached stages); under another
    collection seed, new rollouts from the previous round's policy with that seed, then the same
    training on the earlier rounds' selections plus what the new draw kept, labelled apart."""
    import flows.recipe as recipe

    collected, annotated = [], []

    def collect(run, config, policy, task_set, round_index, carried):
        collected.append((policy, round_index, config.collect.seed, carried))
        return f"rollouts r{round_index} seed {config.collect.seed}"

    def annotate_and_select(run, config, task_set, trajectories, oracle, label, carried):
        annotated.append((trajectories, label, list(carried)))
        return "annotations", f"kept {trajectories}"

    monkeypatch.setattr(recipe, "collect", collect)
    monkeypatch.setattr(recipe, "annotate_and_select", annotate_and_select)
    monkeypatch.setattr(recipe, "evaluate", lambda run, config, policy, task_set, label: label)

    def recorder(calls):
        def run(stage, config, inputs, label):
            calls.append((inputs["model"], inputs["selection"], config.max_steps, label))
            return f"{label} policy"

        return run

    config = PipelineConfig.model_validate({"rounds": 2})
    own = []
    rounds = recipe.run_rounds(recorder(own), config, "cold start", TASK_SET, ["demos"], [64, 32])
    start = recipe.ColdStart("demos", "cold start", "cold evaluation")
    rounds_collected, rounds_annotated = list(collected), list(annotated)

    again = []
    same = recipe.recollected_round(recorder(again), config, start, TASK_SET, rounds, [64, 32])
    assert again == own[1:] and same == rounds[-1]
    assert collected[2:] == rounds_collected[1:] and annotated[2:] == rounds_annotated[1:]

    reseeded = config.model_copy(update={"collect": config.collect.model_copy(update={"seed": 5})})
    calls = []
    drawn = recipe.recollected_round(
        recorder(calls), reseeded, start, TASK_SET, rounds, [64, 32], "rollouts 5"
    )
    assert collected[-1] == ("train r1 policy", 2, 5, ["demos"])
    assert annotated[-1] == ("rollouts r2 seed 5", "r2 rollouts 5", ["demos", "kept rollouts r1 seed 0"])
    assert calls == [
        (
            "train r1 policy",
            ["demos", "kept rollouts r1 seed 0", "kept rollouts r2 seed 5"],
            32,
            "train r2 rollouts 5",
        )
    ]
    assert drawn.evaluation == "evaluate r2 rollouts 5" and drawn.selection == "kept rollouts r2 seed 5"
