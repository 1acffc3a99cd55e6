"""The ``os2d`` console script: one typer app, one module per subcommand."""
from __future__ import annotations

import logging
import sys

import typer

app = typer.Typer(
    name="os2d",
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


def main() -> None:
    """Entry point: turn user errors into one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    _register_commands()
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("os2d: interrupted", file=sys.stderr)
        sys.exit(130)
    except (ValueError, TypeError, FileNotFoundError, OSError, RuntimeError) as err:
        print(f"os2d: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise
