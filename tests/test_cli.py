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
