"""``os2d train``: train an OS2D model from a YAML config (see docs/training.md)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from os2d.errors import InvalidInputError

SHORT_HELP = "Train an OS2D model (YAML config, checkpoints, exact --resume)."
HELP = (
    "Train an OS2D model on OS2D-CSV datasets: random scale/crop patches, class batches, the OS2D "
    "objective (RLL or contrastive + localization), SGD with step decay, periodic validation mAP. "
    "Writes RUN_DIR/config.yaml, checkpoint.pt (atomic, every checkpoint.every iterations), "
    "train_log.csv, val_log.csv, val/*.json, best/ (best val mAP) and last/ (save_model format, "
    "usable with `os2d detect --model RUN_DIR/best`).\n\n"
    "Settings come from --config (YAML) and --set KEY=VALUE overrides (dotted keys, YAML values, "
    "e.g. --set optim.lr=1e-3 --set batch.patch_size=400). --resume continues a killed or finished "
    "run exactly (use --set optim.iterations=N to extend it)."
)


def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created).")],
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="YAML training config (default with --resume: RUN_DIR/config.yaml).")] = None,
    set_: Annotated[Optional[List[str]], typer.Option(
        "--set", help="Override a setting: KEY=VALUE (dotted key, YAML value); repeatable.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    progress: Annotated[Optional[bool], typer.Option(
        "--progress/--no-progress", show_default=False,
        help="Progress bar (default: on when stderr is a terminal).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-interval log lines on stderr.")] = False,
    threads: Annotated[Optional[str], typer.Option(
        "--threads", help="Torch threads: a number, or auto (the idle cores; docs/speed.md). Overrides the config's "
                          "threads.")] = None,
) -> None:
    from os2d.inference.threads import parse_threads, set_threads
    from os2d.train.config import load_config
    from os2d.train.trainer import train as run_training

    if config is None and resume:
        config = out / "config.yaml"
    if config is None:
        raise InvalidInputError("no training config given: use --config FILE.yaml (see configs/)")
    count = parse_threads(threads)
    cfg = load_config(config, list(set_ or []) + ([f"threads={count}"] if count else []))
    if threads is not None and count is None:
        set_threads(None)
    if not quiet:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        train_logger = logging.getLogger("os2d.train")
        train_logger.setLevel(logging.INFO)
        train_logger.addHandler(handler)
        train_logger.propagate = False
    summary = run_training(cfg, out, resume=resume, progress=progress)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "last"}))


def register(app: typer.Typer) -> None:
    """Add ``os2d train`` to the ``os2d`` app."""
    app.command("train", help=HELP, short_help=SHORT_HELP)(train)
