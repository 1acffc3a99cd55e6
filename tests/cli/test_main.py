"""os2d.cli.main: exit codes and messages for user errors, usage errors, Ctrl-C and internal bugs
(in-process on a small app; the real script is covered by tests/robustness)."""
from __future__ import annotations

import pytest
import typer

from os2d.cli import main as cli_main
from os2d.errors import InvalidInputError


@pytest.fixture
def app(monkeypatch):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)

    @app.command("user")
    def user() -> None:
        raise InvalidInputError("bad value 'x'\nsecond line")

    @app.command("bug")
    def bug() -> None:
        raise RuntimeError("internal invariant broken")

    @app.command("interrupt")
    def interrupt() -> None:
        raise KeyboardInterrupt

    @app.command("count")
    def count(n: int = typer.Option(..., "--n")) -> None:
        typer.echo(f"n={n}")

    monkeypatch.setattr(cli_main, "app", app)
    return app


def test_user_error_is_one_line_exit_2(app, capsys):
    assert cli_main.run(["user"]) == 2
    err = capsys.readouterr().err
    assert err == "os2d: error: bad value 'x' second line\n"


def test_internal_error_keeps_its_traceback_exit_1(app, capsys):
    assert cli_main.run(["bug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: internal invariant broken" in err
    assert err.strip().splitlines()[-1].startswith("os2d: internal error: this is a bug in os2d")
    assert "os2d: error:" not in err


def test_ctrl_c_exits_130_with_a_message(app, capsys):
    assert cli_main.run(["interrupt"]) == 130
    assert capsys.readouterr().err.strip() == "os2d: interrupted"


@pytest.mark.parametrize("args, message", [
    (["count", "--n", "abc"], "Invalid value for '--n'"),
    (["count"], "Missing option '--n'"),
    (["count", "--n", "1", "--extra"], "No such option"),
    (["nope"], "No such command"),
])
def test_usage_errors_exit_2_with_usage_and_one_error_line(app, capsys, args, message):
    assert cli_main.run(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("Usage: os2d")
    assert [line for line in lines if line.startswith("os2d: error:")] == [lines[-1]] and message in lines[-1]


def test_success_exit_0(app, capsys):
    assert cli_main.run(["count", "--n", "3"]) == 0
    assert capsys.readouterr().out == "n=3\n"


def test_bare_os2d_is_a_usage_error(app, capsys, monkeypatch):
    monkeypatch.setattr(cli_main, "_register_commands", lambda: None)
    with pytest.raises(SystemExit) as exc:
        cli_main.main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: os2d") and err.strip().endswith(
        "os2d: error: missing command (one of: user, bug, interrupt, count)")


def test_click_exception_class_found_without_a_click_import():
    cls = cli_main.click_exception_class()
    assert cls.__name__ == "ClickException" and issubclass(typer.BadParameter, cls)
