"""``os2d catalog``: build, extend, shrink, rebuild and inspect catalogs of class features."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from tqdm import tqdm

from os2d.cli import options as opt
from os2d.cli.common import classes_from_folder, parse_class_args, progress_enabled
from os2d.errors import InputNotFoundError, InvalidInputError

app = typer.Typer(help="Catalogs: class features computed once, stored with the model's identity (docs/catalogs.md).",
                  no_args_is_help=True)

#: Classes written per index update while building (an interrupted build keeps the finished chunks).
CHUNK = 64


def _detector(model: str, device: str, class_size: Optional[int], augment: Optional[str], threads: Optional[str],
              trim: Optional[bool] = None):
    from os2d.detector import Detector
    from os2d.inference.threads import parse_threads, set_threads

    set_threads(parse_threads(threads))
    fields = opt.settings_fields(class_size=class_size, augment=augment, trim=trim)
    try:
        return Detector.load(model, device=device, **fields)
    except InvalidInputError as err:
        raise InvalidInputError(opt.flag_message(err)) from None


def _add_in_chunks(catalog, classes, detector) -> None:
    names = list(classes)
    with tqdm(total=len(names), desc="classes", unit="class", disable=not progress_enabled()) as bar:
        for start in range(0, len(names), CHUNK):
            part = {n: classes[n] for n in names[start:start + CHUNK]}
            catalog.add(part, detector=detector)
            bar.update(len(part))


def _check_new_folder(out: Path) -> None:
    """``catalog build --out``: a new or empty folder whose parent exists (checked before any work)."""
    from os2d.catalog import store

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "an os2d catalog (add to it with 'os2d catalog add')" if store.is_catalog(out) else "not empty"
        raise InvalidInputError(f"--out {out} already exists and is {what}; give a new or empty folder")
    if not out.exists() and not out.parent.is_dir():
        raise InputNotFoundError(f"output folder does not exist: {out.parent}")


def _discard_if_empty(out: Path, *, existed: bool) -> None:
    """A build that failed before its first chunk: remove the empty catalog it made (only its files)."""
    from os2d.catalog import Catalog, store

    if len(Catalog.open(out)) > 0:
        return  # finished chunks are kept: continue with 'os2d catalog add'
    for name in (store.INDEX_FILE, store.LOCK_FILE):
        (out / name).unlink(missing_ok=True)
    for name in (store.FEATURES_DIR, store.IMAGES_DIR):
        if (out / name).is_dir() and not any((out / name).iterdir()):
            (out / name).rmdir()
    if not existed and not any(out.iterdir()):
        out.rmdir()


@app.command("build")
def build(
    folder: Path = typer.Argument(..., help="Folder of class images (stem = class name; NAME__2.jpg adds a second image)."),
    out: Path = typer.Option(..., "--out", help="The new catalog folder (must not exist or be empty)."),
    model: opt.Model = "default", device: opt.Device = "cpu", threads: opt.Threads = None,
    class_size: opt.ClassSize = None, augment: opt.Augment = None, trim: opt.Trim = None,
) -> None:
    """Compute the features of every class image in FOLDER once and store them in a new catalog."""
    from os2d.catalog import Catalog

    classes = classes_from_folder(folder)
    _check_new_folder(out)
    detector = _detector(model, device, class_size, augment, threads, trim=trim)
    existed = out.exists()
    catalog = Catalog.create(out, detector)
    try:
        _add_in_chunks(catalog, classes, detector)
    except BaseException:
        _discard_if_empty(out, existed=existed)
        raise
    Console().print(f"catalog {out}: {len(catalog)} classes, model {detector.model_identity}")


@app.command("add")
def add(
    catalog_dir: Path = typer.Argument(..., metavar="CATALOG", help="The catalog folder."),
    class_: List[str] = typer.Option([], "--class", "-c", help="Class image as NAME=IMAGE (repeatable; a name in the catalog gets one more image)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Folder of class images."),
    model: opt.Model = "default", device: opt.Device = "cpu", threads: opt.Threads = None,
    rebuild: bool = typer.Option(False, "--rebuild", help="If the catalog was built with another model, recompute it for this one first."),
) -> None:
    """Add classes to a catalog (or more images to classes it has)."""
    from os2d.catalog import Catalog

    new = parse_class_args(class_, classes)
    key = Catalog.open(catalog_dir).key
    detector = _detector(model, device, key.class_size, ",".join(key.augment) or None, threads, trim=key.trim)
    catalog = Catalog.open(catalog_dir, detector, rebuild=rebuild)
    _add_in_chunks(catalog, new, detector)
    Console().print(f"catalog {catalog_dir}: {len(catalog)} classes")


@app.command("remove")
def remove(
    catalog_dir: Path = typer.Argument(..., metavar="CATALOG", help="The catalog folder."),
    names: List[str] = typer.Argument(..., help="Class names to remove."),
) -> None:
    """Remove classes (their features and stored images) from a catalog."""
    from os2d.catalog import Catalog

    catalog = Catalog.open(catalog_dir)
    catalog.remove(names)
    Console().print(f"catalog {catalog_dir}: {len(catalog)} classes")


@app.command("rebuild")
def rebuild_cmd(
    catalog_dir: Path = typer.Argument(..., metavar="CATALOG", help="The catalog folder."),
    model: opt.Model = "default", device: opt.Device = "cpu", threads: opt.Threads = None, trim: opt.Trim = None,
) -> None:
    """Recompute every class of a catalog with MODEL from its stored class images (its class size and
    augmentations kept; margins trimmed as MODEL does unless --trim/--no-trim says otherwise)."""
    from os2d.catalog import Catalog

    catalog = Catalog.open(catalog_dir)
    key = catalog.key
    detector = _detector(model, device, key.class_size, ",".join(key.augment) or None, threads, trim=trim)
    with tqdm(total=len(catalog), desc="classes", unit="class", disable=not progress_enabled()) as bar:
        catalog.rebuild(detector, progress=lambda done, total: bar.update(done - bar.n))
    Console().print(f"catalog {catalog_dir}: rebuilt for model {detector.model_identity}")


@app.command("info")
def info(
    catalog_dir: Path = typer.Argument(..., metavar="CATALOG", help="The catalog folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Show a catalog's model, settings and classes."""
    from os2d.catalog import Catalog, catalog_summary

    summary = catalog_summary(Catalog.open(catalog_dir))
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    console = Console()
    console.print(f"catalog {summary['folder']}: {summary['classes']} classes (version {summary['version']})")
    console.print(f"model {summary['key']['model_identity']}: {summary['model'].get('description', '')}")
    console.print(f"class size {summary['key']['class_size']}, augment {summary['key']['augment'] or 'none'}")
    names = summary["names"]
    console.print(", ".join(names[:40]) + (f" ... ({len(names) - 40} more)" if len(names) > 40 else ""))


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="catalog")
