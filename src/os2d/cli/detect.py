"""``os2d detect``: find class images (or a catalog's classes) in scene images, files or batches."""
from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path
from typing import Iterable, List, Optional

import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from os2d.batch import BatchJob, JsonlWriter, expand_images, run_batch
from os2d.batch.runner import check_ray_address, detect_record
from os2d.cli import options as opt
from os2d.cli.common import parse_class_args, progress_enabled
from os2d.cli.outputs import OutputPlan, detections_from_line, plan_outputs
from os2d.errors import InvalidInputError
from os2d.inference.registry import resolve_method
from os2d.inference.threads import available_cores, parse_threads, set_threads
from os2d.zoo import BUILTIN_MODELS

logger = logging.getLogger(__name__)
#: Scenes whose detections are printed as tables (more: a summary line each).
TABLE_SCENES = 10


def example_files():
    """The example shipped inside the package: ([scene], {class name: [image]})."""
    root = Path(str(resources.files("os2d"))) / "assets" / "example"
    return [root / "input_image.jpg"], {"fantasia-berry": [root / "class_image_0.jpg"],
                                        "fantasia-choco": [root / "class_image_1.jpg"]}


def detect(
    image: List[str] = typer.Option([], "--image", "-i", help="Scene image, folder of images or quoted glob pattern (repeatable)."),
    class_: List[str] = typer.Option([], "--class", "-c", help="Class image as NAME=IMAGE (repeatable)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Folder of class images (stem = class name; NAME__2.jpg adds a second image)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="A catalog built by 'os2d catalog build' (class features computed once)."),
    example: bool = typer.Option(False, "--example", help="Run on the example scene and class images shipped with os2d."),
    model: opt.Model = "default", method: opt.Method = "os2d", mode: opt.Mode = "exact", device: opt.Device = "cpu",
    threads: opt.Threads = None, scales: opt.Scales = None, base_size: opt.BaseSize = None, pyramid: opt.Pyramid = None,
    pyramid_from: opt.PyramidFrom = None, class_size: opt.ClassSize = None, nms: opt.Nms = None,
    nms_mode: opt.NmsMode = None, threshold: opt.Threshold = None, max_dets: opt.MaxDets = None,
    augment: opt.Augment = None, resize_rule: opt.ResizeRule = None, interpolation: opt.Interpolation = None,
    scores: opt.Scores = None, one_label: opt.OneLabel = None, shortlist: opt.Shortlist = None,
    candidates: opt.Candidates = None, trim: opt.Trim = None,
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write detections as a JSON list of {image, class, score, bbox} (os2d records)."),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Stream one JSON line per scene (flushed as each scene is done; docs/batch.md)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a --jsonl file: skip the scenes already in it."),
    coco: Optional[Path] = typer.Option(None, "--coco", help="Write a COCO results file (images, categories, annotations: docs/conventions.md)."),
    draw: Optional[Path] = typer.Option(None, "--draw", help="Write the scene with labelled boxes (a folder when several scenes are given)."),
    crops: Optional[Path] = typer.Option(None, "--crops", help="Save each detection's crop into this folder."),
    workers: int = typer.Option(1, "--workers", help="Local worker processes for many scenes (each loads the model once)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run on a Ray cluster: its address, or auto (the running local cluster)."),
    recursive: bool = typer.Option(False, "--recursive", help="Also take images from subfolders of --image folders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Detect every instance of each class image in the scene images."""
    set_threads(parse_threads(threads))
    _check_run_options(workers=workers, ray=ray, resume=resume, jsonl=jsonl)
    images, class_map, class_files = _inputs(image, class_, classes, catalog, example, recursive=recursive)
    writer = JsonlWriter(jsonl, resume=resume, overwrite=overwrite) if jsonl is not None else None
    model_inputs, protected = _model_and_catalog(model, catalog)
    plan = plan_outputs(json=json_out, jsonl=jsonl, coco=coco, draw=draw, crops=crops, images=images,
                        inputs=list(images) + class_files + model_inputs, overwrite=overwrite, resume=resume,
                        done={str(p) for p in images if writer is not None and writer.is_done(p)},
                        protected=protected)
    fields = opt.settings_fields(scales=scales, base_size=base_size, pyramid=pyramid, pyramid_from=pyramid_from,
                                 class_size=class_size, nms=nms, nms_mode=nms_mode, threshold=threshold,
                                 max_dets=max_dets, augment=augment, resize_rule=resize_rule,
                                 interpolation=interpolation, scores=scores, one_label=one_label,
                                 shortlist=shortlist, candidates=candidates, trim=trim)
    job = BatchJob(method=resolve_method(method, mode), model=model, settings=fields, classes=class_map,
                   catalog=None if catalog is None else str(catalog), device=device,
                   threads=_worker_threads(threads, workers=workers, ray=ray))
    try:
        runner, bank = job.build()
    except InvalidInputError as err:
        raise InvalidInputError(opt.flag_message(err)) from None
    lines = _run(job, runner, bank, images, plan, writer, workers=workers, ray_address=ray)
    _write_outputs(plan, lines, list(bank.names), images)
    settings = runner.describe().get("settings") or {}
    threshold = settings.get("score_threshold")  # a number, or a string such as "-inf" (method descriptions)
    _report(lines, threshold=None if threshold is None else float(threshold), scores=settings.get("scores"))
    failed = [line for line in lines if "error" in line]
    if failed:
        raise InvalidInputError(f"{len(failed)} of {len(lines)} scene images could not be read (the first: "
                                f"{failed[0]['error']}); see {plan.jsonl}")


def _check_run_options(*, workers: int, ray: Optional[str], resume: bool, jsonl: Optional[Path]) -> None:
    """Options checked before anything is read or computed."""
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}")
    if ray is not None:
        check_ray_address(ray)
    if resume and jsonl is None:
        raise InvalidInputError("--resume continues a --jsonl file: give --jsonl OUT")


def _worker_threads(threads: Optional[str], *, workers: int, ray: Optional[str]) -> int:
    """Torch threads per worker: ``--threads``, else 1 per Ray actor (it holds one CPU), else the cores
    shared among the local workers."""
    given = parse_threads(threads)
    if given is not None:
        return given
    return 1 if ray is not None else max(1, available_cores() // max(1, workers))


def _model_and_catalog(model: str, catalog: Optional[Path]):
    """(input files, protected folders) of the model and the catalog: no output may replace them."""
    files, folders = [], [catalog] if catalog is not None else []
    path = Path(model).expanduser()
    if model not in BUILTIN_MODELS and path.exists():
        if path.is_dir():
            folders.append(path)
        else:
            files.append(path)
            if path.suffix in (".json", ".safetensors"):  # a file of an os2d model folder
                folders.append(path.parent)
    return files, folders


def _inputs(image, class_, classes, catalog, example, *, recursive: bool):
    """(scene paths, {class: [paths]} or None, class image files)."""
    if example:
        ex_scenes, ex_classes = example_files()
        images = expand_images(image, recursive=recursive) if image else ex_scenes
        class_map = parse_class_args(class_, classes) if (class_ or classes) else ex_classes
    else:
        if not image:
            raise InvalidInputError("no scene image given: use --image SCENE (or --example)")
        images = expand_images(image, recursive=recursive)
        if catalog is not None:
            if class_ or classes:
                raise InvalidInputError("--catalog cannot be combined with --class/--classes; add classes to the "
                                        "catalog with 'os2d catalog add'")
            return images, None, []
        class_map = parse_class_args(class_, classes)
    class_map = {name: [str(p) for p in paths] for name, paths in class_map.items()}
    return images, class_map, [Path(p) for paths in class_map.values() for p in paths]


def _previous_lines(writer: Optional[JsonlWriter], images: List[Path], names: List[str]) -> List[dict]:
    """The resumed file's records of this run's scenes (spelled as given now)."""
    if writer is None or not writer.previous:
        return []
    known = set(names)
    for record in writer.previous:
        foreign = {d.get("class") for d in record.get("detections", [])} - known
        if foreign:
            raise InvalidInputError(f"--resume: {writer.path} holds detections of class {sorted(foreign)[0]!r}, "
                                    f"which is not a class of this run: it was written by another job (use "
                                    f"another --jsonl file, or --overwrite)")
    by_key = {}
    for record in writer.previous:
        by_key.setdefault(record["image"], record)
        by_key.setdefault(str(Path(record["image"]).resolve()), record)
    previous = []
    for path in images:
        record = by_key.get(str(path)) or by_key.get(str(path.resolve()))
        if record is not None:
            previous.append({**record, "image": str(path)})
    logger.warning("--resume: %d of %d scenes are already in %s", len(previous), len(images), writer.path)
    return previous


def _results(job: BatchJob, runner, bank, todo: List[Path], *, stream: bool, workers: int,
             ray_address: Optional[str], show: bool) -> Iterable[dict]:
    """Records of ``todo`` in completion order (one scene here: with per-level progress)."""
    if len(todo) != 1 or workers != 1 or ray_address is not None:
        return run_batch(job, todo, workers=workers, ray_address=ray_address, local=(runner, bank))
    with tqdm(total=0, desc=f"{Path(todo[0]).name}: pyramid levels", unit="level", disable=not show) as bar:
        def on_level(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return [detect_record(runner, bank, todo[0], keep_going=stream, on_level=on_level)]


def _run(job: BatchJob, runner, bank, images: List[Path], plan: OutputPlan, writer: Optional[JsonlWriter], *,
         workers: int, ray_address: Optional[str]) -> List[dict]:
    """Detect the scenes not done yet; every record (summaries for big runs), in the order of ``images``.

    With ``--jsonl`` each record is written, drawn and cropped as it comes; without it the first
    unreadable scene stops the run and drawings/crops are made at the end (nothing when it fails).
    """
    names = list(bank.names)
    previous = _previous_lines(writer, images, names)
    todo = [p for p in images if str(p) not in plan.done]
    stream, show = writer is not None, progress_enabled()
    keep = plan.keeps_results or len(images) <= TABLE_SCENES or (not stream and (plan.drawings or plan.crops))
    fresh: List[dict] = []
    results = _results(job, runner, bank, todo, stream=stream, workers=workers, ray_address=ray_address, show=show)
    start = time.perf_counter()
    with tqdm(total=len(todo), desc="scenes", unit="img", disable=not show or len(todo) < 2) as bar:
        for line in results:
            if writer is not None:
                writer.write(line)
                _draw_line(plan, line, names)
            elif "error" in line:
                raise InvalidInputError(line["error"])
            fresh.append(line if keep else _summary(line))
            bar.update(1)
            bar.set_postfix_str(f"{bar.n / max(time.perf_counter() - start, 1e-9):.2f} img/s")
    if writer is not None:
        writer.close()
    else:
        for line in fresh:
            _draw_line(plan, line, names)
    small = plan.keeps_results or len(images) <= TABLE_SCENES
    lines = previous + [line if small else _summary(line) for line in fresh]
    order = {str(p): i for i, p in enumerate(images)}
    return sorted(lines, key=lambda line: order.get(line["image"], len(order)))


def _summary(line: dict) -> dict:
    if "count" in line or "error" in line:
        return line
    return {k: v for k, v in line.items() if k != "detections"} | {"count": len(line.get("detections", []))}


def _draw_line(plan: OutputPlan, line: dict, names: List[str]) -> None:
    if "error" in line or (not plan.drawings and plan.crops is None):
        return
    from os2d.draw import draw_detections, save_crops

    dets = detections_from_line(line, names)
    if line["image"] in plan.drawings:
        target = plan.drawings[line["image"]]
        target.parent.mkdir(parents=True, exist_ok=True)
        draw_detections(line["image"], dets, target)
    if plan.crops is not None:
        plan.crops.mkdir(parents=True, exist_ok=True)
        save_crops(line["image"], dets, plan.crops, overwrite=True)


def _write_outputs(plan: OutputPlan, lines: List[dict], names: List[str], images: List[Path]) -> None:
    good = [line for line in lines if "error" not in line]
    if plan.json is not None:
        from os2d.eval.detections_io import write_detections

        write_detections(_records(good, images), plan.json)
    if plan.coco is not None:
        from os2d.eval.coco_results import write_coco_results

        records = _records(good, images)
        sizes = {_name(line["image"], images): (line["width"], line["height"]) for line in good}
        write_coco_results(records, plan.coco, category_names=names, image_sizes=sizes)


def _name(image: str, images: List[Path]) -> str:
    """The image's name in --json/--coco: its file name, or its path when file names repeat."""
    names = [p.name for p in images]
    return Path(image).name if len(set(names)) == len(names) else image


def _records(lines: List[dict], images: List[Path]) -> List[dict]:
    return [{"image": _name(line["image"], images), **det} for line in lines for det in line["detections"]]


def _report(lines: List[dict], *, threshold: Optional[float] = None, scores: Optional[str] = None) -> None:
    """The tables (a summary line for big runs), and a hint when nothing scored above the threshold."""
    console = Console()
    done = [line for line in lines if "error" not in line]
    found = sum(len(line.get("detections", [])) or line.get("count", 0) for line in done)
    _report_scenes(console, lines, readable=len(done), found=found)
    if done and not found and threshold is not None and threshold > float("-inf"):
        kind = {"calibrated": " (calibrated scores: estimated probabilities)", "raw": " (raw scores)"}.get(scores, "")
        console.print(f"No detection scored above the threshold {threshold:g}{kind}; weaker matches are "
                      f"hidden. Lower it with --threshold to see them (docs/scores.md).")


def _report_scenes(console: Console, lines: List[dict], *, readable: int, found: int) -> None:
    """A table per scene, or for big runs one line (``readable`` scenes, ``found`` detections)."""
    if len(lines) > TABLE_SCENES:
        console.print(f"{readable} scenes, {found} detections" + (f", {len(lines) - readable} unreadable"
                                                                  if readable < len(lines) else ""))
        return
    for line in lines:
        if "error" in line:
            console.print(f"{line['image']}: [red]{line['error']}[/red]")
            continue
        dets = line.get("detections", [])
        table = Table(title=f"{Path(line['image']).name}: {len(dets)} detections ({line['seconds']:.2f} s)")
        for col in ("class", "score", "x1", "y1", "x2", "y2"):
            table.add_column(col, justify="right" if col != "class" else "left")
        for det in dets[:50]:
            table.add_row(det["class"], f"{det['score']:.2f}", *[f"{v:.1f}" for v in det["bbox"]])
        console.print(table)
        if len(dets) > 50:
            console.print(f"... {len(dets) - 50} more (see --json)")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
