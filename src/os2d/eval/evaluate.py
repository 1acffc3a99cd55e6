"""Evaluate detections on a :class:`~os2d.data.datasets.Dataset` and run a detector over one."""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from os2d.data.datasets.base import Dataset
from os2d.errors import InvalidTypeError
from os2d.eval.detections_io import records_to_predictions, split_known_classes, validate_records
from os2d.eval.voc import ImageGT, voc_evaluation
from os2d.structures import Detections

logger = logging.getLogger(__name__)

DetectFn = Callable[[Path], Detections]


def dataset_ground_truth(dataset: Dataset) -> List[ImageGT]:
    """One :class:`ImageGT` per scene, labels = index in ``dataset.class_names``."""
    index = {name: i for i, name in enumerate(dataset.class_names)}
    out = []
    for rec in dataset.images:
        keep = np.array([lab in index for lab in rec.labels], dtype=bool)
        labels = np.array([index[lab] for lab, k in zip(rec.labels, keep) if k], dtype=np.int64)
        out.append(ImageGT(boxes=rec.boxes[keep], labels=labels, difficult=rec.difficult[keep],
                           image_size=rec.size))
    return out


def _clean(value) -> Optional[float]:
    value = float(value)
    return None if math.isnan(value) else value


def evaluate_detections(dataset: Dataset, records: Sequence[dict], *, iou_thresh: float = 0.5,
                        use_07_metric: bool = False, distractors: Sequence[str] = ()) -> dict:
    """VOC evaluation (reference OS2D protocol) of detection records on ``dataset``.

    Returns a JSON-ready dict: ``dataset``, ``iou_thresh``, ``use_07_metric``, ``map``,
    ``map_weighted``, ``recall``, ``ap_joint_classes``, ``ap_per_class`` / ``recall_per_class``
    (class name -> value, ``None`` when undefined), ``n_pos`` (class name -> non-difficult GT
    count), ``num_images``, ``num_classes``, ``num_detections`` (records evaluated) and
    ``ignored_detections`` / ``ignored_classes`` (records of classes without ground truth in the
    dataset, which the reference protocol ignores: their AP is undefined; a warning is logged).
    Raises ``ValueError`` for a record whose image is not in the dataset.

    ``distractors``: extra class names that never occur in the dataset (catalog-scale evaluation).
    Their detections are false positives of the joint-class AP; the mAP stays over the dataset's
    classes (a distractor has no AP).
    """
    names = list(dataset.class_names)
    known = names + [d for d in distractors if d not in set(names)]
    preds = records_to_predictions(records, file_names=[r.file_name for r in dataset.images],
                                   class_names=known)
    _, ignored = split_known_classes(validate_records(list(records)), known)
    result = voc_evaluation(dataset_ground_truth(dataset), preds, iou_thresh=iou_thresh,
                            use_07_metric=use_07_metric, num_classes=len(known))
    return {
        "dataset": dataset.name, "iou_thresh": float(iou_thresh), "use_07_metric": bool(use_07_metric),
        "map": _clean(result.map), "map_weighted": _clean(result.map_weighted),
        "recall": _clean(result.recall), "ap_joint_classes": _clean(result.ap_joint_classes),
        "ap_per_class": {n: _clean(v) for n, v in zip(names, result.ap_per_class)},
        "recall_per_class": {n: _clean(v) for n, v in zip(names, result.recall_per_class)},
        "n_pos": {n: int(v) for n, v in zip(names, result.n_pos)},
        "num_images": len(dataset), "num_classes": len(names), "num_distractors": len(known) - len(names),
        "num_detections": len(records) - sum(ignored.values()),
        "ignored_detections": sum(ignored.values()), "ignored_classes": sorted(ignored),
    }


def detect_records(scenes: Iterable[Tuple[Path, str]], detect_fn: DetectFn, *, desc: str,
                   total: Optional[int] = None, progress: bool = True) -> List[dict]:
    """Call ``detect_fn(path) -> Detections`` on every ``(path, image name)``; return records.

    The progress bar goes to stderr and is shown only when ``progress`` is true and stderr is a
    terminal.
    """
    records: List[dict] = []
    show = progress and sys.stderr.isatty()
    for path, name in tqdm(scenes, desc=desc, unit="img", total=total, disable=not show):
        dets = detect_fn(path)
        if not isinstance(dets, Detections):
            raise InvalidTypeError(f"detect_fn must return Detections, got {type(dets).__name__} for {path}")
        records.extend(dets.to_records(image_name=name))
    return records


def run_detector_on_dataset(dataset: Dataset, detect_fn: DetectFn, *, progress: bool = True) -> List[dict]:
    """Call ``detect_fn(scene_path) -> Detections`` on every scene; records use ``file_name`` as ``"image"``."""
    records = detect_records(((rec.path, rec.file_name) for rec in dataset.images), detect_fn,
                             desc=f"detect {dataset.name}", total=len(dataset.images), progress=progress)
    logger.info("%s: %d detections on %d images", dataset.name, len(records), len(dataset))
    return records


def _fmt(value: Optional[float]) -> str:
    return "    -" if value is None else f"{100 * value:5.1f}"


def format_ap_table(result: dict) -> str:
    """Plain-text table of an :func:`evaluate_detections` result (AP and recall in %)."""
    names = list(result["ap_per_class"])
    width = max([len("class")] + [len(n) for n in names])
    lines = [f"{'class':<{width}}  {'AP':>5}  {'recall':>6}  {'#gt':>5}", "-" * (width + 24)]
    for name in names:
        lines.append(f"{name:<{width}}  {_fmt(result['ap_per_class'][name])}  "
                     f"{_fmt(result['recall_per_class'][name]):>6}  {result['n_pos'][name]:>5}")
    lines.append("-" * (width + 24))
    total = sum(result["n_pos"].values())
    lines.append(f"{'mAP':<{width}}  {_fmt(result['map'])}  {_fmt(result['recall']):>6}  {total:>5}")
    lines.append(f"{result['dataset']}: {result['num_images']} images, {result['num_classes']} classes, "
                 f"{result['num_detections']} detections, IoU {result['iou_thresh']:g}")
    return "\n".join(lines)
