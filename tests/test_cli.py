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
    code = main(["run", "--home", str(tmp_path), "--synthesis.templates", "founder-birthplace,nope"])
    assert code == 2 and "unknown templates ['nope']" in capsys.readouterr().err


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
