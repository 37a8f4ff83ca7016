import pytest

from flows.cli import main


def test_invalid_values_fail_before_any_work(tmp_path, capsys):
    home = tmp_path / "home"
    code = main(["run", "--home", str(home), "--collect.samples-per-task", "-2", "--policy.spec", "gpt:huge"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--collect.samples-per-task" in err and "--policy.spec" in err and "unknown model spec" in err
    assert not home.exists()  # nothing started, nothing written


def test_unknown_flag_is_rejected(capsys):
    try:
        main(["run", "--collect.sample-per-task", "2"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "unrecognized arguments: --collect.sample-per-task" in capsys.readouterr().err


def test_list_flags_are_split(tmp_path, capsys):
    code = main(["run", "--home", str(tmp_path), "--synthesis.shapes", "chain,nope"])
    assert code == 2 and "unknown shapes ['nope']" in capsys.readouterr().err


def test_corpus_command_reports_the_bad_line_then_indexes_the_fixed_corpus(tmp_path, capsys):
    home, docs = tmp_path / "home", tmp_path / "docs.jsonl"
    docs.write_text(
        '{"doc_id": "1", "title": "Alder", "text": "Alder is a tree."}\n{"doc_id": "2", "title": \n'
    )
    code = main(["corpus", str(docs), "--home", str(home), "--id-field", "doc_id"])
    assert code == 2 and f"{docs}:2: invalid JSON" in capsys.readouterr().err
    assert not (home / "artifacts").exists()

    docs.write_text('{"doc_id": "1", "title": "Alder", "text": "Alder is a tree."}\n')
    assert main(["corpus", str(docs), "--home", str(home), "--id-field", "doc_id"]) == 0
    assert "1 documents" in capsys.readouterr().out
    assert main(["artifacts", "--home", str(home), "--kind", "index"]) == 0
    assert "index" in capsys.readouterr().out
    assert main(["corpus", str(docs), "--home", str(home), "--id-field", "doc_id"]) == 0
    assert "(already stored)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["lineage", "../x"],
        ["explain", "../../etc"],
        ["retry", "0123456789abcdef0123", "../x"],
        ["serve-retriever", "--index", "../../index/0123456789abcdef0123"],
        ["lineage", "0123456789ABCDEF0123"],  # ids are lowercase
    ],
)
def test_an_artifact_id_that_is_not_a_digest_exits_2_before_any_lookup(argv, tmp_path, capsys):
    home = tmp_path / "home"
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--home", str(home)])
    assert exit_.value.code == 2
    assert "is not an artifact id: ids are 20 lowercase hex characters" in capsys.readouterr().err
    assert not home.exists()


def test_a_part_flow_refuses_a_path_as_a_model_id_before_any_work(prefect_harness, tmp_path):
    from flows.config import PipelineConfig
    from flows.parts import annotation, collection, rounds

    config = PipelineConfig(home=str(tmp_path / "home"))
    for start in (
        lambda: collection(config, model_id="../../x"),
        lambda: rounds(config, model_id="../checkpoint/0123456789abcdef0123"),
        lambda: annotation(config, trajectories_id="../../../etc"),
    ):
        with pytest.raises(ValueError, match="is not an artifact id"):
            start()
    assert not (tmp_path / "home").exists()  # no artifact, no catalog, no run recorded


def test_the_store_refuses_to_build_a_path_from_anything_but_a_known_kind_and_a_hex_id(tmp_path):
    from storage import ArtifactStore
    from storage.ids import check_artifact_id

    store = ArtifactStore(tmp_path)
    assert store.path("index", "0123456789abcdef0123") == store.artifacts / "index" / "0123456789abcdef0123"
    for kind, artifact_id in [("index", "../../x"), ("index", ""), ("index", "ab/cd"), ("../index", "ab")]:
        with pytest.raises(ValueError):
            store.path(kind, artifact_id)
    assert check_artifact_id("0123456789abcdef0123") == "0123456789abcdef0123"
    for bad in ("0123456789abcdef012", "0123456789abcdef01234", "0123456789abcdef012g", None):
        with pytest.raises(ValueError, match="is not an artifact id"):
            check_artifact_id(bad)
