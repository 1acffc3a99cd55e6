"""COCO results files: detections that ``pycocotools`` can evaluate and browse.

File layout (one JSON object, written atomically)::

    {
      "info": {"description": "os2d detection results; COCO results in 'annotations'"},
      "images":      [{"id": 1, "file_name": "shelf.jpg", "width": 685, "height": 507}, ...],
      "categories":  [{"id": 1, "name": "choco"}, ...],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                       "bbox": [x, y, w, h], "score": 0.87}, ...]
    }

``annotations`` is the standard COCO results list (``image_id``, ``category_id``, ``bbox`` as
``[x, y, width, height]`` in pixels of the original image, ``score``), each entry with an ``id``
(1..N) as well, so that the whole file is also a COCO dataset: ``COCO("OUT.json")`` loads it for
browsing (``imgToAnns``, ``loadCats``...). ``images`` and ``categories`` name what the ids mean.
To evaluate against a ground truth whose ids match::

    gt = COCO("instances.json")
    dt = gt.loadRes(read_coco_results("OUT.json"))   # the 'annotations' list
    ev = COCOeval(gt, dt, "bbox"); ev.evaluate(); ev.accumulate(); ev.summarize()

Ids: image ids count 1, 2, ... in order of first appearance unless ``image_ids`` maps file names
to the ground truth's ids; category ids are 1..K in the order of ``category_names`` (COCO ids
start at 1) unless ``category_ids`` maps names to the ground truth's ids. os2d's own detections
JSON (records ``{"image", "class", "score", "bbox": [x1, y1, x2, y2]}``) converts both ways
(:func:`to_coco_results`, :func:`records_from_coco`).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from os2d.errors import InputNotFoundError, InvalidInputError, InvalidTypeError
from os2d.eval.detections_io import validate_records
from os2d.fileio import atomic_write_text
from os2d.structures import Detections

logger = logging.getLogger(__name__)

Inputs = Union[Sequence[Detections], Sequence[dict]]
Id = Union[int, str]
DESCRIPTION = "os2d detection results; COCO results in 'annotations'"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _records_and_sizes(inputs: Inputs) -> Tuple[List[dict], Dict[str, Tuple[int, int]], List[str]]:
    """Records, image sizes and class names (in first-seen order) of a list of Detections or records."""
    if all(isinstance(item, Detections) for item in inputs):
        records, sizes, names = [], {}, []
        for i, dets in enumerate(inputs):
            if not dets.image_name:
                raise InvalidInputError(f"detections {i} have no image_name; COCO images need a file name")
            if dets.image_name in sizes:
                raise InvalidInputError(f"two scenes are named {dets.image_name!r}; COCO images need unique file names")
            if min(dets.image_size) <= 0:
                raise InvalidInputError(f"detections of {dets.image_name!r} have no image size {dets.image_size}")
            sizes[dets.image_name] = tuple(int(v) for v in dets.image_size)
            names.extend(n for n in dets.class_names if n not in names)
            records.extend(dets.to_records())
        return validate_records(records), sizes, names
    if any(isinstance(item, Detections) for item in inputs):
        raise InvalidTypeError("expected a list of Detections or a list of records, got a mix")
    records = validate_records(list(inputs))
    return records, {}, sorted({r["class"] for r in records})


def _ids(names: Sequence[str], given: Optional[Mapping[str, Id]], what: str) -> Dict[str, Id]:
    if given is None:
        return {name: i + 1 for i, name in enumerate(names)}
    missing = [n for n in names if n not in given]
    if missing:
        raise InvalidInputError(f"no {what} id given for {missing[:5]} ({len(missing)} in all)")
    ids = {n: given[n] for n in names}
    bad = [v for v in ids.values() if isinstance(v, bool) or not isinstance(v, (int, str))]
    if bad:
        raise InvalidInputError(f"{what} ids must be integers or strings, got {bad[:5]}")
    if len(set(ids.values())) != len(ids):
        raise InvalidInputError(f"{what} ids are not unique: {ids}")
    return ids


def _image_order(records: Sequence[dict], sizes: Mapping[str, Tuple[int, int]]) -> List[str]:
    order: Dict[str, None] = {}
    for rec in records:
        order.setdefault(rec["image"], None)
    for name in sizes:
        order.setdefault(name, None)
    return list(order)


def _image_entries(names: Sequence[str], sizes: Mapping, ids: Mapping[str, Id]) -> List[dict]:
    missing = [n for n in names if n not in sizes]
    if missing:
        raise InvalidInputError(f"no image size (width, height) given for {missing[:5]} ({len(missing)} in all)")
    entries = []
    for name in names:
        w, h = sizes[name]
        if isinstance(w, bool) or isinstance(h, bool) or not (isinstance(w, int) and isinstance(h, int)) \
                or w <= 0 or h <= 0:
            raise InvalidInputError(f"image {name!r}: size must be two positive integers, got {sizes[name]!r}")
        entries.append({"id": ids[name], "file_name": name, "width": w, "height": h})
    return entries


def to_coco_results(inputs: Inputs, *, category_names: Optional[Sequence[str]] = None,
                    image_sizes: Optional[Mapping[str, Tuple[int, int]]] = None,
                    image_ids: Optional[Mapping[str, Id]] = None,
                    category_ids: Optional[Mapping[str, Id]] = None) -> dict:
    """Build a COCO results object (layout in the module docstring).

    Args:
        inputs: a list of :class:`Detections` (each with ``image_name`` and ``image_size``; scenes
            without detections are listed in ``images`` too) or of os2d records
            ``{"image", "class", "score", "bbox": [x1, y1, x2, y2]}``.
        category_names: all categories, in id order; default: the Detections' class names in
            first-seen order, or the records' class names sorted.
        image_sizes: file name -> (width, height); needed for records, overrides Detections'
            sizes; images named here without detections are listed too.
        image_ids, category_ids: the ground truth's ids (name -> id) instead of 1, 2, ...
    """
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, Sequence):
        raise InvalidTypeError(f"expected a list of Detections or records, got {type(inputs).__name__}")
    records, sizes, seen_classes = _records_and_sizes(inputs)
    sizes.update(image_sizes or {})
    names = list(category_names) if category_names is not None else seen_classes
    if len(set(names)) != len(names):
        raise InvalidInputError(f"duplicate category names in {names}")
    unknown = sorted({r["class"] for r in records} - set(names))
    if unknown:
        raise InvalidInputError(f"detections of classes {unknown[:5]} that are not in the {len(names)} categories")
    images = _image_order(records, sizes)
    img_ids, cat_ids = _ids(images, image_ids, "image"), _ids(names, category_ids, "category")
    annotations = [
        {"id": i + 1, "image_id": img_ids[r["image"]], "category_id": cat_ids[r["class"]],
         "bbox": [r["bbox"][0], r["bbox"][1], r["bbox"][2] - r["bbox"][0], r["bbox"][3] - r["bbox"][1]],
         "score": r["score"]}
        for i, r in enumerate(records)
    ]
    return {"info": {"description": DESCRIPTION}, "images": _image_entries(images, sizes, img_ids),
            "categories": [{"id": cat_ids[n], "name": n} for n in names], "annotations": annotations}


def write_coco_results(inputs: Inputs, path: Union[str, Path], **kwargs) -> Path:
    """Build (:func:`to_coco_results`, same keyword arguments) and write a COCO results file atomically."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"COCO results path is a folder: {path}")
    if not path.parent.is_dir():
        raise InputNotFoundError(f"folder for the COCO results file does not exist: {path.parent}")
    data = to_coco_results(inputs, **kwargs)
    atomic_write_text(path, json.dumps(data, ensure_ascii=False) + "\n")
    logger.info("wrote %d COCO results on %d images to %s", len(data["annotations"]), len(data["images"]), path)
    return path


def _load(source: Union[str, Path, dict]) -> dict:
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise InputNotFoundError(f"COCO results file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"COCO results file is not valid JSON ({err}): {path}") from err
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "categories", "annotations")):
        raise InvalidInputError(f"{source if not isinstance(source, dict) else 'COCO results'}: expected an "
                                "object with lists 'images', 'categories' and 'annotations'")
    return data


def read_coco_results(source: Union[str, Path, dict]) -> List[dict]:
    """The COCO results list (``annotations``) of a file or object, ready for ``COCO.loadRes``."""
    return list(_load(source)["annotations"])


def records_from_coco(source: Union[str, Path, dict]) -> List[dict]:
    """os2d detection records ``{"image", "class", "score", "bbox": [x1, y1, x2, y2]}`` of a COCO results file."""
    data = _load(source)
    try:
        images = {img["id"]: img["file_name"] for img in data["images"]}
        cats = {cat["id"]: cat["name"] for cat in data["categories"]}
    except (TypeError, KeyError) as err:
        raise InvalidInputError(f"COCO results: images need 'id' and 'file_name', categories 'id' and 'name' "
                                f"({err!r})") from None
    records = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in images or ann.get("category_id") not in cats:
            raise InvalidInputError(f"annotations[{i}] is not a result on a known image and category: {ann!r}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise InvalidInputError(f"annotations[{i}]: 'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}")
        x, y, w, h = bbox
        records.append({"image": images[ann["image_id"]], "class": cats[ann["category_id"]],
                        "score": ann.get("score"), "bbox": [x, y, x + w, y + h]})
    return validate_records(records)
