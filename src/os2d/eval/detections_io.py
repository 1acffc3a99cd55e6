"""Detections JSON: read, validate, write atomically, convert for the VOC evaluator.

The format is a JSON list of records
``{"image": <file name>, "class": <class name>, "score": float, "bbox": [x1, y1, x2, y2]}``
with boxes in pixels of the original image (see docs/conventions.md).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from os2d.errors import InputNotFoundError, InvalidInputError, InvalidTypeError
from os2d.eval.voc import ImagePred
from os2d.fileio import atomic_write_text
from os2d.structures import Detections

logger = logging.getLogger(__name__)

RECORD_KEYS = ("image", "class", "score", "bbox")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_record(record, *, index: int = 0) -> dict:
    """Check one detection record and return it normalised (floats, list bbox)."""
    where = f"detection {index}"
    if not isinstance(record, dict):
        raise InvalidInputError(f"{where}: expected an object, got {type(record).__name__}")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise InvalidInputError(f"{where}: missing keys {missing} in {record!r}")
    for key in ("image", "class"):
        if not isinstance(record[key], str) or not record[key]:
            raise InvalidInputError(f"{where}: {key!r} must be a non-empty string, got {record[key]!r}")
    if not _is_number(record["score"]):
        raise InvalidInputError(f"{where}: 'score' must be a finite number, got {record['score']!r}")
    bbox = record["bbox"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise InvalidInputError(f"{where}: 'bbox' must be 4 finite numbers [x1, y1, x2, y2], got {bbox!r}")
    if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
        raise InvalidInputError(f"{where}: 'bbox' {list(bbox)} has x2 < x1 or y2 < y1")
    return {"image": record["image"], "class": record["class"], "score": float(record["score"]),
            "bbox": [float(v) for v in bbox]}


def validate_records(records) -> List[dict]:
    """Validate a list of detection records (see :func:`validate_record`)."""
    if not isinstance(records, (list, tuple)):
        raise InvalidInputError(f"detections must be a list of records, got {type(records).__name__}")
    return [validate_record(r, index=i) for i, r in enumerate(records)]


def read_detections(path: Path) -> List[dict]:
    """Read and validate a detections JSON file."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"detections file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"detections file is not valid JSON ({err}): {path}") from err
    try:
        return validate_records(data)
    except ValueError as err:
        raise InvalidInputError(f"{path}: {err}") from None


def write_detections(records: Sequence[dict], path: Path) -> Path:
    """Validate and write records as JSON atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    clean = validate_records(list(records))
    if path.is_dir():
        raise InvalidInputError(f"detections output path is a directory: {path}")
    if not path.parent.is_dir():
        raise InputNotFoundError(f"folder for the detections file does not exist: {path.parent}")
    atomic_write_text(path, json.dumps(clean) + "\n")
    logger.info("wrote %d detections to %s", len(clean), path)
    return path


def records_from_detections(detections: Iterable[Detections]) -> List[dict]:
    """Records of several :class:`Detections` (each uses its own ``image_name``)."""
    out: List[dict] = []
    for dets in detections:
        if not isinstance(dets, Detections):
            raise InvalidTypeError(f"expected Detections, got {type(dets).__name__}")
        out.extend(dets.to_records())
    return out


def split_known_classes(records: Sequence[dict], class_names: Sequence[str]) -> Tuple[List[dict], Dict[str, int]]:
    """(records of the known classes, {other class: number of its records}).

    The reference protocol evaluates only classes with ground truth: a detection of any other
    class has no AP to count towards (its AP is undefined), so such records are set aside.
    """
    known = set(class_names)
    kept: List[dict] = []
    ignored: Dict[str, int] = {}
    for rec in records:
        if rec["class"] in known:
            kept.append(rec)
        else:
            ignored[rec["class"]] = ignored.get(rec["class"], 0) + 1
    return kept, ignored


def records_to_predictions(records: Sequence[dict], *, file_names: Sequence[str],
                           class_names: Sequence[str]) -> List[ImagePred]:
    """Group records by image into :class:`ImagePred` (labels = index in ``class_names``).

    Records of classes that are not in ``class_names`` (no ground truth in the dataset) are
    ignored with a warning giving their count (see :func:`split_known_classes`). Raises
    ``ValueError`` for a record whose image is not in ``file_names``. Boxes are assumed to be in
    the images' original pixels.
    """
    image_index = {name: i for i, name in enumerate(file_names)}
    class_index = {name: i for i, name in enumerate(class_names)}
    grouped: List[list] = [[] for _ in file_names]
    clean = validate_records(list(records))
    for i, rec in enumerate(clean):
        if rec["image"] not in image_index:
            raise InvalidInputError(f"detection {i}: image {rec['image']!r} is not in the dataset")
    kept, ignored = split_known_classes(clean, class_names)
    if ignored:
        names = sorted(ignored)
        logger.warning("ignored %d detections of %d classes without ground truth in the dataset "
                       "(their AP is undefined): %s%s", sum(ignored.values()), len(names),
                       ", ".join(repr(n) for n in names[:10]), " ..." if len(names) > 10 else "")
    for rec in kept:
        grouped[image_index[rec["image"]]].append(rec)
    return [
        ImagePred(
            boxes=np.array([r["bbox"] for r in group], dtype=np.float64).reshape(-1, 4),
            labels=np.array([class_index[r["class"]] for r in group], dtype=np.int64),
            scores=np.array([r["score"] for r in group], dtype=np.float64),
        )
        for group in grouped
    ]
