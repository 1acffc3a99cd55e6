"""``os2d evaluate``: run a method over an annotated dataset and report mAP (or top-1 accuracy).

Two kinds of ``--dataset``:

* an annotated detection dataset (anything :func:`os2d.data.datasets.resolve_dataset` opens: an
  OS2D-CSV folder or CSV, a COCO JSON, a paper dataset name, a folder under ``--data-root``):
  VOC mAP at IoU 0.5 with the reference protocol, per-class AP;
* a grocery-store folder (``labels.csv`` + ``iconic/`` + ``photos/``, e.g.
  ``--dataset grocery-store --data-root ../shared/data``): the one-shot recognition check of
  :mod:`os2d.eval.grocery` (top-1 accuracy over photos, split ``test`` by default).

Class features are computed once per dataset. For evaluation every detection is kept (score
threshold ``-inf``, at most 300 detections per image) unless ``--threshold`` / ``--max-dets``
say otherwise.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from os2d.cli.common import check_output, parse_scales, progress_enabled
from os2d.inference.settings import AUGMENTATIONS
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.eval.methods import (
    ALL_METHODS,
    EVAL_SETTINGS,
    build_method,
    check_method,
    suggest_base_size,
)
from os2d.fileio import atomic_write_text

logger = logging.getLogger(__name__)


def evaluate(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset folder, annotation file (.csv/.json), paper dataset name, folder name under --data-root, or a grocery-store folder (top-1 recognition check)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate, e.g. val-new-cl (grocery-store: test [default], val, train, all)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding the datasets (for dataset names)."),
    model: str = typer.Option("default", "--model", "-m", help="Built-in model (default, untrained) or checkpoint path (not used by --method sift)."),
    method: str = typer.Option("os2d", "--method", help=f"Detection method: {', '.join(ALL_METHODS)}."),
    scales: Optional[str] = typer.Option(None, "--scales", help="Scene longer side in pixels per pyramid level, e.g. 640,1024,1600 (grocery-store default: 256,320,384,448)."),
    base_size: Optional[str] = typer.Option(None, "--base-size", help="Base size of the paper's 7-level pyramid (0.5..1.6 x base), or 'auto': objects of average GT size become ~240 px at level 1."),
    class_size: Optional[int] = typer.Option(None, "--class-size", help="Class images are resized so that h*w ~= class_size^2 (default 240)."),
    nms: Optional[float] = typer.Option(None, "--nms", help="IoU threshold of the per-class NMS (default 0.3)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Keep detections scoring above this (evaluation default: keep all)."),
    max_dets: Optional[int] = typer.Option(None, "--max-dets", help="Keep at most this many detections per image (evaluation default 300)."),
    augment: Optional[str] = typer.Option(None, "--augment", help=f"Also match transformed class images: comma-separated of {', '.join(AUGMENTATIONS)}."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Evaluate only the first N images (grocery-store: N photos taken round-robin over classes)."),
    iou: float = typer.Option(0.5, "--iou", help="IoU threshold of a correct detection (detection datasets)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure and the settings used as JSON."),
    save_detections: Optional[Path] = typer.Option(None, "--save-detections", help="Write all detections as a JSON list of {image, class, score, bbox} (the format of os2d detect --json)."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Evaluate this detections JSON instead of running a method."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda (OS2D methods)."),
) -> None:
    """Evaluate a detection method on an annotated dataset (mAP) or on grocery-store photos (top-1 accuracy)."""
    from os2d import __version__
    from os2d.eval.grocery import find_grocery_store

    check_method(method)
    _check_outputs(json_out, save_detections, detections, overwrite=overwrite)
    if max_images is not None and max_images < 1:
        raise InvalidInputError(f"--max-images must be at least 1, got {max_images}")
    if not 0.0 < iou < 1.0:
        raise InvalidInputError(f"--iou must be in (0, 1), got {iou}")
    augment_list = tuple(a.strip() for a in augment.split(",") if a.strip()) if augment else ()
    scale_list = parse_scales(scales)

    grocery_root = find_grocery_store(dataset, data_root)
    if grocery_root is not None:
        from os2d.eval.grocery import DEFAULT_SCALES, DEFAULT_SPLIT, load_grocery

        data = load_grocery(grocery_root, split=split or DEFAULT_SPLIT)
        if max_images is not None:
            data = data.head(max_images)
        class_images, items = data.class_images, [(p.name, p.path) for p in data.photos]
        if scale_list is None and base_size is None and method != "sift":
            scale_list = list(DEFAULT_SCALES)
        base = _parse_base_size(base_size, None)
    else:
        from os2d.data.datasets import resolve_dataset

        data = resolve_dataset(dataset, data_root=data_root, split=split)
        if max_images is not None and max_images < len(data):
            data = data.subset(file_names=[r.file_name for r in data.images[:max_images]])
        class_images, items = data.class_images, [(r.file_name, r.path) for r in data.images]
        base = _parse_base_size(base_size, data)

    info = {"os2d_version": __version__, "dataset": dataset, "dataset_name": data.name,
            "split": data.split if grocery_root is not None else split,
            "data_root": None if data_root is None else str(data_root), "max_images": max_images,
            "num_images": len(items)}
    if detections is not None:
        records = _read_detections_for(detections, {name for name, _ in items}, subset=max_images is not None)
        info.update({"method": None, "model": None, "detections_file": str(detections)})
    else:
        settings = {"scales": scale_list, "base_size": base, "class_size": class_size, "nms_iou": nms,
                    "score_threshold": EVAL_SETTINGS["score_threshold"] if threshold is None else threshold,
                    "max_detections": EVAL_SETTINGS["max_detections"] if max_dets is None else max_dets,
                    "augment": augment_list or None}
        runner = build_method(method, model=model, device=device, **settings)
        records, timing = _run(runner, class_images, items, name=data.name)
        info.update(runner.describe())
        info["scales"] = info["settings"].get("level_scales")
        info.update(timing)
        if save_detections is not None:
            from os2d.eval.detections_io import write_detections

            write_detections(records, save_detections)

    if grocery_root is not None:
        from os2d.eval.grocery import evaluate_grocery_records

        result = evaluate_grocery_records(data, records)
        result["top1_accuracy"] = result["accuracy"]
        _print_grocery(result, info)
    else:
        from os2d.eval.evaluate import evaluate_detections

        result = evaluate_detections(data, records, iou_thresh=iou)
        _print_map(result, info)
    if json_out is not None:
        _write_json({**info, **result, "dataset": dataset, "dataset_name": data.name}, json_out)


# ---------------------------------------------------------------------------------- helpers
def _check_outputs(json_out: Optional[Path], save: Optional[Path], detections: Optional[Path], *,
                   overwrite: bool) -> None:
    check_output(json_out, overwrite=overwrite)
    check_output(save, overwrite=overwrite)
    if save is not None and detections is not None:
        raise InvalidInputError("--save-detections and --detections exclude each other: with --detections no "
                         "detector runs")
    paths = [p.resolve() for p in (json_out, save, detections) if p is not None]
    if len(set(paths)) != len(paths):
        raise InvalidInputError("--json, --save-detections and --detections must be different files")
    if detections is not None and not detections.is_file():
        raise InputNotFoundError(f"detections file not found: {detections}")


def _parse_base_size(text: Optional[str], dataset) -> Optional[int]:
    if text is None:
        return None
    if text.strip().lower() == "auto":
        if dataset is None:
            raise InvalidInputError("--base-size auto needs a dataset with boxes; the grocery-store check has none "
                             "(use --scales)")
        value = suggest_base_size(dataset)
        logger.info("--base-size auto: %d px", value)
        return value
    try:
        value = int(text)
    except ValueError as err:
        raise InvalidInputError(f"--base-size must be a whole number of pixels or 'auto', got {text!r}") from err
    if value < 32:
        raise InvalidInputError(f"--base-size must be at least 32 px, got {value}")
    return value


def _read_detections_for(path: Path, names: set, *, subset: bool) -> List[dict]:
    """Records of ``path``; with ``--max-images`` the records of images left out are dropped."""
    from os2d.eval.detections_io import read_detections

    records = read_detections(path)
    if subset:
        records = [r for r in records if r["image"] in names]
    return records


def _run(runner, class_images, items, *, name: str):
    """Detect on every ``(image name, path)``; class features once. Returns (records, timing)."""
    from tqdm import tqdm

    from os2d.structures import Detections

    start = time.perf_counter()
    bank = runner.prepare_classes(class_images)
    class_seconds = time.perf_counter() - start
    records: List[dict] = []
    start = time.perf_counter()
    for image_name, path in tqdm(items, desc=f"{runner.method} on {name}", unit="img",
                                 disable=not progress_enabled()):
        dets = runner.detect(path, bank, image_name=image_name)
        assert isinstance(dets, Detections)
        records.extend(dets.to_records(image_name=image_name))
    seconds = time.perf_counter() - start
    timing = {"seconds_class_features": round(class_seconds, 4), "seconds_detection": round(seconds, 4),
              "seconds_per_image": round(seconds / max(1, len(items)), 4)}
    return records, timing


def _pct(value: Optional[float]) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _header(info: dict) -> str:
    if info.get("detections_file"):
        return f"detections {info['detections_file']} on {info['dataset_name']}"
    text = f"{info['method']}"
    if info.get("model"):
        text += f" (model {info['model']})"
    text += f" on {info['dataset_name']}, {info['num_images']} images"
    if "seconds_per_image" in info:
        text += f", {info['seconds_per_image']:.2f} s/image"
    return text


def _print_map(result: dict, info: dict) -> None:
    console = Console()
    console.print(_header(info))
    table = Table()
    for col in ("class", "AP %", "recall %", "#gt"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, ap in result["ap_per_class"].items():
        table.add_row(name, _pct(ap), _pct(result["recall_per_class"][name]), str(result["n_pos"][name]))
    table.add_section()
    table.add_row("mAP", _pct(result["map"]), _pct(result["recall"]), str(sum(result["n_pos"].values())))
    console.print(table)
    console.print(f"mAP@{result['iou_thresh']:g} = {_pct(result['map'])} % "
                  f"({result['num_detections']} detections)")


def _print_grocery(result: dict, info: dict) -> None:
    console = Console()
    console.print(_header(info))
    table = Table()
    for col in ("class", "top-1 %", "photos"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, acc in result["accuracy_per_class"].items():
        table.add_row(name, _pct(acc), str(result["photos_per_class"][name]))
    table.add_section()
    table.add_row("all photos", _pct(result["accuracy"]), str(result["num_photos"]))
    console.print(table)
    console.print(f"top-1 accuracy = {_pct(result['accuracy'])} % ({result['num_correct']}/{result['num_photos']} "
                  f"photos; mean per class {_pct(result['mean_class_accuracy'])} %)")


def _write_json(blob: dict, path: Path) -> None:
    """Write ``blob`` atomically (temporary file + rename)."""
    atomic_write_text(path, json.dumps(blob, indent=2, allow_nan=False) + "\n")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
