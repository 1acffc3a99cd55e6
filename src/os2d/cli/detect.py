"""``os2d detect``: find class images in scene images."""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from os2d.cli.common import (
    check_output,
    parse_class_args,
    parse_scales,
    progress_enabled,
)
from os2d.detector import Detector
from os2d.inference.registry import CLI_METHODS, resolve_method
from os2d.inference.settings import AUGMENTATIONS

RESIZE_RULES = ("longer-side", "area")
from os2d.errors import InputNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)


def example_files() -> tuple:
    """The example shipped inside the package: (scene, {class name: [image]})."""
    root = Path(str(resources.files("os2d"))) / "assets" / "example"
    return [root / "input_image.jpg"], {"fantasia-berry": [root / "class_image_0.jpg"],
                                        "fantasia-choco": [root / "class_image_1.jpg"]}


def detect(
    image: List[Path] = typer.Option([], "--image", "-i", help="Scene image (repeat for several)."),
    class_: List[str] = typer.Option([], "--class", "-c", help="Class image as NAME=IMAGE (repeatable)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Folder of class images (stem = class name; NAME__2.jpg adds a second image)."),
    example: bool = typer.Option(False, "--example", help="Run on the example scene and class images shipped with os2d."),
    model: str = typer.Option("default", "--model", "-m", help="Built-in model (default, untrained) or checkpoint path (ours or the reference's .pth)."),
    method: str = typer.Option("os2d", "--method", help=f"Matching method: {', '.join(CLI_METHODS)}."),
    scales: Optional[str] = typer.Option(None, "--scales", help="Scene longer side in pixels per pyramid level, e.g. 640,1024,1600 (default: the paper's 7 levels 0.5..1.6 x --base-size)."),
    base_size: Optional[int] = typer.Option(None, "--base-size", help="Base scene size of the default pyramid (model default: 1280)."),
    class_size: Optional[int] = typer.Option(None, "--class-size", help="Class images are resized so that h*w ~= class_size^2 (default 240)."),
    nms: Optional[float] = typer.Option(None, "--nms", help="IoU threshold of the per-class NMS (default 0.3)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Keep detections scoring above this (any float; -1 keeps all)."),
    max_dets: Optional[int] = typer.Option(None, "--max-dets", help="Keep at most this many detections per scene (default 100)."),
    augment: Optional[str] = typer.Option(None, "--augment", help=f"Also match transformed class images: comma-separated of {', '.join(AUGMENTATIONS)}."),
    resize_rule: str = typer.Option("longer-side", "--resize-rule", help="Scene resize rule for --scales: longer-side (evaluation) or area (reference demo: sqrt(h*w))."),
    interpolation: str = typer.Option("bilinear", "--interpolation", help="Resize filter: bilinear (evaluation) or bicubic (reference demo)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write detections as a JSON list of {image, class, score, bbox}."),
    draw: Optional[Path] = typer.Option(None, "--draw", help="Write the scene with labelled boxes (a folder when several scenes are given)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda."),
) -> None:
    """Detect every instance of each class image in the scene images."""
    if example:
        ex_scenes, ex_classes = example_files()
        image = list(image) or ex_scenes
        class_map = parse_class_args(class_, classes) if (class_ or classes) else ex_classes
    else:
        if not image:
            raise InvalidInputError("no scene image given: use --image SCENE (or --example)")
        class_map = parse_class_args(class_, classes)
    check_output(json_out, overwrite=overwrite)
    draw_targets = _draw_targets(draw, image, overwrite=overwrite)
    augment_list = tuple(a.strip() for a in augment.split(",") if a.strip()) if augment else ()
    if resize_rule not in RESIZE_RULES:
        raise InvalidInputError(f"unknown --resize-rule {resize_rule!r}; expected one of {list(RESIZE_RULES)}")
    for path in image:
        if not path.exists():
            raise InputNotFoundError(f"scene image not found: {path}")
    if method == "sift":  # the SIFT baseline: no model, no pyramid (refuses pyramid options)
        from os2d.eval.methods import build_method

        detector = build_method(
            "sift", model=model, scales=parse_scales(scales), base_size=base_size, class_size=class_size,
            nms_iou=nms, score_threshold=threshold, max_detections=max_dets, augment=augment_list,
            resize_rule=resize_rule, interpolation=interpolation,
        )
    else:
        detector = Detector.load(
            model, device=device, method=resolve_method(method, "exact"), scales=parse_scales(scales), base_size=base_size,
            class_size=class_size, nms_iou=nms, score_threshold=threshold, max_detections=max_dets,
            augment=augment_list, resize_rule=resize_rule, interpolation=interpolation,
        )
    bank = detector.prepare_classes(class_map)
    results = []
    for path in tqdm(image, desc="scenes", unit="img", disable=not progress_enabled() or len(image) < 2):
        results.append(detector.detect(path, bank))
    _report(results)
    if json_out is not None:
        records = [rec for res in results for rec in res.to_records()]
        from os2d.eval.detections_io import write_detections

        write_detections(records, json_out)
    for path, res, target in zip(image, results, draw_targets):
        from os2d.cli.draw import draw_detections

        draw_detections(path, res, target)


def _draw_targets(draw: Optional[Path], images: List[Path], *, overwrite: bool) -> List[Path]:
    if draw is None:
        return []
    if len(images) == 1 and draw.suffix:
        check_output(draw, overwrite=overwrite)
        return [draw]
    draw.mkdir(parents=True, exist_ok=True)
    names = [p.stem for p in images]
    if len(set(names)) != len(names):
        raise InvalidInputError("--draw folder: several scene images share a file name; draw them one at a time")
    targets = [draw / f"{name}_detections.png" for name in names]
    for target in targets:
        check_output(target, overwrite=overwrite)
    return targets


def _report(results) -> None:
    console = Console()
    for res in results:
        table = Table(title=f"{res.image_name}: {len(res)} detections", show_lines=False)
        for col in ("class", "score", "x1", "y1", "x2", "y2"):
            table.add_column(col, justify="right" if col != "class" else "left")
        for rec in res.to_records()[:50]:
            table.add_row(rec["class"], f"{rec['score']:.4f}", *[f"{v:.1f}" for v in rec["bbox"]])
        console.print(table)
        if len(res) > 50:
            console.print(f"... {len(res) - 50} more (see --json)")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
