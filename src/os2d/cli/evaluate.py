"""``os2d evaluate``: run a method over an annotated dataset and report mAP (or top-1 accuracy).

Two kinds of ``--dataset``:

* an annotated detection dataset (anything :func:`os2d.data.datasets.resolve_dataset` opens: an
  OS2D-CSV folder or CSV, a COCO JSON, a paper dataset name, a folder under ``--data-root``):
  VOC mAP at IoU 0.5 with the reference protocol, per-class AP, and the joint-class AP;
* a one-shot recognition folder (``labels.csv`` + ``iconic/`` + ``photos/``: the grocery-store
  data or GroZi-120): top-1 accuracy over photos (:mod:`os2d.eval.grocery`).

``--distractors DIR`` adds every image in DIR as an extra class that never occurs in the dataset
(catalog-scale evaluation): mAP stays over the dataset's classes, the joint-class AP (all
detections ranked together) and top-1 accuracy count the distractors' confusions.

Class features are computed once per dataset. For evaluation every detection is kept (score
threshold ``-inf``, at most 300 detections per image) and scores are raw unless options say
otherwise; the pyramid follows the model's rule (``--pyramid``).
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Dict, List, Optional

import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from os2d.cli import options as opt
from os2d.cli.common import classes_from_folder, progress_enabled
from os2d.cli.outputs import check_file_output
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.eval.methods import EVAL_SETTINGS, build_method, suggest_base_size
from os2d.fileio import atomic_write_text
from os2d.inference.registry import resolve_method
from os2d.inference.threads import parse_threads, set_threads

logger = logging.getLogger(__name__)
DISTRACTOR_PREFIX = "distractor:"


def evaluate(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset folder, annotation file (.csv/.json), paper dataset name, folder name under --data-root, or a recognition folder (grocery-store, grozi120)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate, e.g. val-new-cl (recognition folders: test (the default), val, train, all)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding the datasets (for dataset names)."),
    model: opt.Model = "default", method: opt.Method = "os2d", mode: opt.Mode = "exact", device: opt.Device = "cpu",
    threads: opt.Threads = None, scales: opt.Scales = None,
    base_size: Optional[str] = typer.Option(None, "--base-size", help="Base size of the paper pyramid (0.5..1.6 x base), or auto: objects of average ground-truth size become ~240 px at level 1."),
    pyramid: opt.Pyramid = None, pyramid_from: opt.PyramidFrom = None, class_size: opt.ClassSize = None,
    nms: opt.Nms = None, nms_mode: opt.NmsMode = None, threshold: opt.Threshold = None, max_dets: opt.MaxDets = None,
    augment: opt.Augment = None, scores: opt.Scores = None, one_label: opt.OneLabel = None,
    shortlist: opt.Shortlist = None, candidates: opt.Candidates = None, trim: opt.Trim = None,
    distractors: Optional[Path] = typer.Option(None, "--distractors", help="Folder of images added as extra classes that never occur in the dataset."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Evaluate only the first N images (recognition folders: N photos taken round-robin over classes)."),
    iou: float = typer.Option(0.5, "--iou", help="IoU threshold of a correct detection (detection datasets), in (0, 1]."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure and the settings used as JSON."),
    save_detections: Optional[Path] = typer.Option(None, "--save-detections", help="Write all detections as a JSON list of {image, class, score, bbox} (the format of os2d detect --json)."),
    coco: Optional[Path] = typer.Option(None, "--coco", help="Write all detections as a COCO results file (docs/conventions.md)."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Evaluate this detections JSON instead of running a method."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Evaluate a detection method on an annotated dataset (mAP) or on recognition photos (top-1 accuracy)."""
    from os2d import __version__
    from os2d.eval.grocery import find_grocery_store

    set_threads(parse_threads(threads))
    name = resolve_method(method, mode)
    _check_outputs(json_out, save_detections, coco, detections, overwrite=overwrite)
    if max_images is not None and max_images < 1:
        raise InvalidInputError(f"--max-images must be at least 1, got {max_images}")
    if not 0.0 < iou <= 1.0:
        raise InvalidInputError(f"--iou must be in (0, 1], got {iou}")
    recognition = find_grocery_store(dataset, data_root)
    data, class_images, items = _load(dataset, data_root, split, recognition, max_images)
    _check_not_inputs((json_out, save_detections, coco), dataset, data_root, class_images, items)
    extra = _distractors(distractors, class_images)
    info = {"os2d_version": __version__, "dataset": dataset, "dataset_name": data.name,
            "split": data.split if recognition is not None else split,
            "data_root": None if data_root is None else str(data_root), "max_images": max_images,
            "num_images": len(items), "num_distractors": len(extra)}
    if detections is not None:
        records = _read_detections_for(detections, {n for n, _ in items}, subset=max_images is not None)
        info.update({"method": None, "model": None, "detections_file": str(detections)})
    else:
        fields = opt.settings_fields(scales=scales, pyramid=pyramid, pyramid_from=pyramid_from,
                                     class_size=class_size, nms=nms, nms_mode=nms_mode, threshold=threshold,
                                     max_dets=max_dets, augment=augment, scores=scores, one_label=one_label,
                                     shortlist=shortlist, candidates=candidates, trim=trim)
        fields.setdefault("score_threshold", EVAL_SETTINGS["score_threshold"])
        fields.setdefault("max_detections", EVAL_SETTINGS["max_detections"])
        if name != "sift":
            fields.setdefault("scores", "raw")
        base = _parse_base_size(base_size, None if recognition is not None else data)
        if base is not None:
            fields["base_size"] = base
            fields.setdefault("pyramid_rule", "paper")
        try:
            runner = build_method(name, model=model, device=device, **fields)
        except InvalidInputError as err:
            raise InvalidInputError(opt.flag_message(err)) from None
        records, timing = _run(runner, {**class_images, **extra}, items, name=data.name)
        info.update(runner.describe())
        info["scales"] = info["settings"].get("level_scales")
        info.update(timing)
    _save(records, save_detections, coco, data, recognition)
    result = _score(data, records, recognition, iou=iou, distractors=list(extra))
    (_print_grocery if recognition is not None else _print_map)(result, info)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps({**info, **result, "dataset": dataset, "dataset_name": data.name},
                                               indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------------------------- helpers
def _load(dataset: str, data_root: Optional[Path], split: Optional[str], recognition, max_images):
    """(data, class images, [(image name, path)])."""
    if recognition is not None:
        from os2d.eval.grocery import DEFAULT_SPLIT, load_grocery

        data = load_grocery(recognition, split=split or DEFAULT_SPLIT)
        if max_images is not None:
            data = data.head(max_images)
        return data, dict(data.class_images), [(p.name, p.path) for p in data.photos]
    from os2d.data.datasets import resolve_dataset

    data = resolve_dataset(dataset, data_root=data_root, split=split)
    if max_images is not None and max_images < len(data):
        data = data.subset(file_names=[r.file_name for r in data.images[:max_images]])
    return data, dict(data.class_images), [(r.file_name, r.path) for r in data.images]


def _distractors(folder: Optional[Path], classes: Dict) -> Dict[str, List[Path]]:
    """``{"distractor:<stem>": [image]}`` for every image of ``folder`` (names never clash with classes)."""
    if folder is None:
        return {}
    found = classes_from_folder(folder)
    return {f"{DISTRACTOR_PREFIX}{stem}": paths for stem, paths in found.items()}


def _check_outputs(json_out, save, coco, detections, *, overwrite: bool) -> None:
    for path, flag in ((json_out, "--json"), (save, "--save-detections"), (coco, "--coco")):
        check_file_output(path, flag=flag, overwrite=overwrite)
    if save is not None and detections is not None:
        raise InvalidInputError("--save-detections and --detections exclude each other: with --detections no "
                                "detector runs")
    paths = [p.resolve() for p in (json_out, save, coco, detections) if p is not None]
    if len(set(paths)) != len(paths):
        raise InvalidInputError("--json, --save-detections, --coco and --detections must be different files")
    if detections is not None and not detections.is_file():
        raise InputNotFoundError(f"detections file not found: {detections}")


def _check_not_inputs(outputs, dataset: str, data_root: Optional[Path], class_images: Dict, items) -> None:
    """Refuse an output that is the dataset's annotation file, inside its folder's data, or one of its images."""
    inputs = {Path(p).resolve() for paths in class_images.values() for p in paths} | {Path(p).resolve() for _, p in items}
    spec = Path(dataset) if Path(dataset).exists() else (Path(data_root) / dataset if data_root else None)
    if spec is not None and spec.exists():
        inputs.add(spec.resolve())
        if spec.is_dir():
            inputs |= {p.resolve() for p in spec.glob("**/*.csv")} | {p.resolve() for p in spec.glob("**/*.json")}
    for out in outputs:
        if out is not None and out.resolve() in inputs:
            raise InvalidInputError(f"an output would replace an input of the dataset: {out}")


def _parse_base_size(text: Optional[str], dataset) -> Optional[int]:
    if text is None:
        return None
    if text.strip().lower() == "auto":
        if dataset is None:
            raise InvalidInputError("--base-size auto needs a dataset with boxes; recognition folders have none "
                                    "(use --scales)")
        value = suggest_base_size(dataset)
        logger.info("--base-size auto: %d px", value)
        return value
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(f"--base-size must be a whole number of pixels or 'auto', got {text!r}") from None
    if not 32 <= value <= 4096:
        raise InvalidInputError(f"--base-size must be between 32 and 4096 px, got {value}")
    return value


def _read_detections_for(path: Path, names: set, *, subset: bool) -> List[dict]:
    """Records of ``path``; with ``--max-images`` the records of images left out are dropped."""
    from os2d.eval.detections_io import read_detections

    records = read_detections(path)
    return [r for r in records if r["image"] in names] if subset else records


def _run(runner, class_images, items, *, name: str):
    """Detect on every ``(image name, path)``; class features once. Returns (records, timing)."""
    start = time.perf_counter()
    bank = runner.prepare_classes(class_images)
    class_seconds = time.perf_counter() - start
    records: List[dict] = []
    start, cpu = time.perf_counter(), time.process_time()
    with tqdm(items, desc=f"{runner.method} on {name}", unit="img", disable=not progress_enabled()) as bar:
        for image_name, path in bar:
            records.extend(runner.detect(path, bank, image_name=image_name).to_records(image_name=image_name))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    timing = {"seconds_class_features": round(class_seconds, 4), "seconds_detection": round(seconds, 4),
              "seconds_per_image": round(seconds / max(1, len(items)), 4),
              "cpu_seconds_per_image": round(cpu / max(1, len(items)), 4)}
    return records, timing


def _save(records, save: Optional[Path], coco: Optional[Path], data, recognition) -> None:
    if save is not None:
        from os2d.eval.detections_io import write_detections

        write_detections(records, save)
    if coco is not None:
        from os2d.eval.coco_results import write_coco_results

        if recognition is not None:
            raise InvalidInputError("--coco needs a detection dataset with image sizes (not a recognition folder)")
        sizes = {r.file_name: tuple(r.size) for r in data.images if r.size is not None}
        names = list(data.class_names) + sorted({r["class"] for r in records} - set(data.class_names))
        write_coco_results(records, coco, category_names=names, image_sizes=sizes)


def _score(data, records, recognition, *, iou: float, distractors: List[str]) -> dict:
    if recognition is not None:
        from os2d.eval.grocery import top1_accuracy, top1_predictions

        names = [p.name for p in data.photos]
        top = top1_predictions(records, names)
        result = top1_accuracy([top[n] for n in names], [p.label for p in data.photos], data.class_names)
        result.update({"dataset": data.name, "task": f"{data.kind} top-1 recognition",
                       "num_classes": len(data.class_names), "num_detections": len(records),
                       "top1_accuracy": result["accuracy"],
                       "distractor_top1": sum(1 for n in names if (top[n] or "").startswith(DISTRACTOR_PREFIX)),
                       "predictions": {n: top[n] for n in names}})
        return result
    from os2d.eval.evaluate import evaluate_detections

    return evaluate_detections(data, records, iou_thresh=iou, distractors=distractors)


def _pct(value: Optional[float]) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _header(info: dict) -> str:
    if info.get("detections_file"):
        return f"detections {info['detections_file']} on {info['dataset_name']}"
    text = f"{info['method']}" + (f" (model {info['model']})" if info.get("model") else "")
    text += f" on {info['dataset_name']}, {info['num_images']} images"
    if info.get("num_distractors"):
        text += f", {info['num_distractors']} distractor classes"
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
    console.print(f"mAP@{result['iou_thresh']:g} = {_pct(result['map'])} %, joint-class AP = "
                  f"{_pct(result['ap_joint_classes'])} % ({result['num_detections']} detections)")


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


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
