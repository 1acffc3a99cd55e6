"""The ``os2d`` console script: one typer app, one module per subcommand.

Exit codes: 0 success; 2 a user error (an :class:`os2d.errors.UserError`, printed as one line
``os2d: error: ...``) or a usage error (typer's usage line, then one ``os2d: error:`` line);
130 interrupted (Ctrl-C); 1 an internal error (a bug: its traceback, then a line asking to
report it).
"""
from __future__ import annotations

import logging
import sys
import traceback
from typing import List, Optional, Sequence

import typer

from os2d.errors import UserError

PROG = "os2d"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL_ERROR = 1

app = typer.Typer(
    name=PROG,
    help="One-shot object detection: find every instance of a class image in scene images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    # Each subcommand module exposes ``register(app)``.
    from os2d.cli import detect

    detect.register(app)
    from os2d.cli import synth
    synth.register(app)
    from os2d.cli import train
    train.register(app)
    from os2d.cli import evaluate
    evaluate.register(app)
    from os2d.cli import catalog
    catalog.register(app)
    from os2d.cli import export
    export.register(app)
    from os2d.cli import serve
    serve.register(app)


def click_exception_class() -> type:
    """The ``ClickException`` class of the click that typer runs on.

    Recent typer releases ship click inside typer, older ones depend on the ``click`` package;
    ``typer.BadParameter`` is click's ``BadParameter`` in both, so its bases name the class
    without importing a top-level ``click`` that may not exist.
    """
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException":
            return cls
    raise ImportError("typer.BadParameter does not derive from a ClickException")  # pragma: no cover


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces (an error message must stay on one line)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _error(message: str) -> None:
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def _usage_error(err: Exception) -> int:
    """typer's usage lines for a click usage error, then one ``os2d: error:`` line."""
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
        if ctx.command.get_help_option(ctx) is not None:
            print(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.", file=sys.stderr)
    _error(err.format_message())
    return int(getattr(err, "exit_code", EXIT_USER_ERROR)) or EXIT_USER_ERROR


def _missing_command() -> int:
    """Bare ``os2d``: usage and the list of commands on stderr, exit code 2 (a usage error)."""
    command = typer.main.get_command(app)
    with command.make_context(PROG, [], resilient_parsing=True) as ctx:
        print(ctx.get_usage(), file=sys.stderr)
        print(f"Try '{PROG} --help' for help.", file=sys.stderr)
        names = command.list_commands(ctx)
    _error(f"missing command (one of: {', '.join(names)})")
    return EXIT_USER_ERROR


def _internal_error() -> int:
    traceback.print_exc()
    print(f"{PROG}: internal error: this is a bug in os2d, not a problem with your input; please "
          f"report it with the traceback above and the command line", file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def run(args: Sequence[str]) -> int:
    """Run the app on ``args`` and return the exit code (see the module docstring)."""
    click_exception = click_exception_class()
    try:
        code = app(args=list(args), prog_name=PROG, standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort as exc:  # older typer: Ctrl-C (or EOF at a prompt) becomes Abort
        if isinstance(exc.__cause__, EOFError):
            _error("aborted (end of input)")
            return EXIT_INTERNAL_ERROR
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except UserError as err:
        _error(str(err))
        return EXIT_USER_ERROR
    except click_exception as err:
        return _usage_error(err)
    except Exception:
        return _internal_error()
    if code == EXIT_INTERRUPTED:  # recent typer returns 130 for Ctrl-C
        print(f"{PROG}: interrupted", file=sys.stderr)
    return code if isinstance(code, int) else 0


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``os2d`` script (``argv`` defaults to ``sys.argv[1:]``)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        _register_commands()
        code = run(args) if args else _missing_command()
    except KeyboardInterrupt:  # during start-up
        print(f"{PROG}: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    main()
