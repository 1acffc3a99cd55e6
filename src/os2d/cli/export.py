"""``os2d export``: write a model as ONNX graphs for onnxruntime (see docs/export.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Annotated

import typer

SHORT_HELP = "Export a model as ONNX graphs (scene features, class features, matching head)."
HELP = (
    "Export a model for use without PyTorch: OUT/scene_features.onnx (scene pixels -> features), "
    "OUT/class_features.onnx (class image pixels -> class features), OUT/head.onnx (scene and class "
    "features -> scores and boxes at every location) and OUT/export.json (model identity, input and "
    "output names and shapes, preprocessing, stride, anchor size). Image sizes and the number of "
    "classes are dynamic. docs/export.md shows detection with onnxruntime alone.\n\n"
    "OUT must be new or empty; --overwrite replaces only the files the export writes."
)


def export(
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder (new or empty).", show_default=False)],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Built-in model (default, untrained), an os2d model folder or a reference .pth.")
    ] = "default",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into a non-empty OUT, replacing the export's own files there.")] = False,
    threads: Annotated[Optional[str], typer.Option(
        "--threads", help="Torch threads: a number, or auto (the idle cores; docs/speed.md).")] = None,
) -> None:
    from os2d.export import export_model
    from os2d.inference.threads import parse_threads, set_threads

    set_threads(parse_threads(threads))

    manifest = export_model(model, out, fmt=fmt, overwrite=overwrite)
    files = ", ".join([g.file for g in manifest.graphs.values()] + ["export.json"])
    typer.echo(f"exported {model} ({manifest.model_identity}, opset {manifest.opset}) to {out}: {files}")


def register(app: typer.Typer) -> None:
    """Add ``os2d export`` to the ``os2d`` app."""
    app.command("export", help=HELP, short_help=SHORT_HELP)(export)
