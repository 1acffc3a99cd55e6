"""Reader for COCO-style detection JSON (``images``, ``annotations``, ``categories``).

* ``bbox`` is ``[x, y, w, h]`` in pixels; it is converted to xyxy. Boxes may leave the image by
  at most 1 px (then they are clipped); more is an error.
* ``"iscrowd": 1`` or an extra ``"difficult": true`` marks a box difficult (ignored by the
  evaluation).
* Scene files are ``image_root / file_name`` (``image_root`` defaults to the JSON's folder).
* Class images: a category may name its class image with an extra key ``"class_image"`` (a path
  relative to the JSON's folder). Otherwise the class image is **cropped from the largest
  non-crowd, non-difficult instance** of the category and saved as PNG under ``cache_dir``
  (default ``~/.cache/os2d/datasets/<json stem>-<hash>``; never next to the user's files unless
  ``cache_dir`` points there). Since that instance would be a trivial match, **the scene it was
  cropped from is excluded from the evaluation** (all its boxes, of every class); the excluded
  file names are listed in ``Dataset.excluded_images``. A category without any usable instance
  and without ``class_image`` is dropped with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from os2d.data.datasets.base import (
    Dataset,
    SceneRecord,
    check_boxes_in_image,
    default_cache_dir,
    read_image_size,
)
from os2d.data.images import load_image
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write

logger = logging.getLogger(__name__)


def load_coco_json(json_path: Path) -> dict:
    """Parse and shape-check a COCO JSON file."""
    if not json_path.exists():
        raise InputNotFoundError(f"COCO annotation file not found: {json_path}")
    if not json_path.is_file():
        raise InvalidInputError(f"COCO annotation file is not a regular file: {json_path}")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"COCO annotation file is not UTF-8 text (offset {err.start}): {json_path}") from None
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"COCO annotation file is not valid JSON ({err}): {json_path}") from err
    if not isinstance(data, dict):
        raise InvalidInputError(f"COCO annotation file must hold a JSON object: {json_path}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InvalidInputError(f"COCO annotation file {json_path} needs a list {key!r}")
    if not data["images"] or not data["categories"]:
        raise InvalidInputError(f"COCO annotation file {json_path} has no images or no categories (empty dataset)")
    return data


def _categories(data: dict, json_path: Path) -> Dict[int, dict]:
    out: Dict[int, dict] = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise InvalidInputError(f"{json_path}: categories[{i}] needs an 'id' (integer or string) and a "
                                    f"string 'name', got {_short(cat)}")
        if cat["id"] in out:
            raise InvalidInputError(f"{json_path}: duplicate category id {cat['id']!r}")
        out[cat["id"]] = cat
    names = [c["name"] for c in out.values()]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidInputError(f"{json_path}: duplicate category names {dup}")
    return out


def _image_entries(data: dict, json_path: Path, image_root: Path) -> Dict[object, dict]:
    out: Dict[object, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_id(img.get("id")) or not isinstance(img.get("file_name"), str):
            raise InvalidInputError(f"{json_path}: images[{i}] needs an 'id' (integer or string) and a string "
                                    f"'file_name', got {_short(img)}")
        if img["id"] in out:
            raise InvalidInputError(f"{json_path}: duplicate image id {img['id']!r}")
        path = image_root / img["file_name"]
        if not path.is_file():
            raise InputNotFoundError(f"scene image {img['file_name']!r} (image id {img['id']}) not found: {path}")
        size = _declared_size(img, f"{json_path}: images[{i}] ({img['file_name']!r})") or read_image_size(path)
        out[img["id"]] = {"file_name": img["file_name"], "path": path, "size": size}
    return out


def _is_id(value) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _declared_size(img: dict, where: str) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from an ``images`` entry; None when absent or 0 (then the file header
    is read); anything but a whole number of pixels is an error."""
    w, h = img.get("width"), img.get("height")
    for key, value in (("width", w), ("height", h)):
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                               and math.isfinite(value) and value >= 0 and float(value).is_integer())
        if not ok:
            raise InvalidInputError(f"{where}: {key!r} must be a whole number of pixels, got {value!r}")
    if not w or not h:
        return None
    return int(w), int(h)


def _parse_annotation(ann: dict, index: int, json_path: Path, images: dict, cats: dict):
    where = f"{json_path}: annotations[{index}]"
    if not isinstance(ann, dict):
        raise InvalidInputError(f"{where} is not an object")
    if not _is_id(ann.get("image_id")) or ann.get("image_id") not in images:
        raise InvalidInputError(f"{where} refers to unknown image id {ann.get('image_id')!r}")
    if not _is_id(ann.get("category_id")) or ann.get("category_id") not in cats:
        raise InvalidInputError(f"{where} refers to unknown category id {ann.get('category_id')!r}")
    bbox = ann.get("bbox")
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
        raise InvalidInputError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise InvalidInputError(f"{where}: bbox {bbox} has negative width or height")
    box = check_boxes_in_image(np.array([[x, y, x + w, y + h]]), images[ann["image_id"]]["size"], where=where)[0]
    difficult = bool(ann.get("iscrowd", 0)) or bool(ann.get("difficult", False))
    return ann["image_id"], cats[ann["category_id"]]["name"], box, difficult


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "class"


def _crop_class_image(path: Path, box: np.ndarray, out_path: Path) -> Path:
    image = load_image(path, what="scene image")
    x1, y1 = int(math.floor(box[0])), int(math.floor(box[1]))
    x2, y2 = max(int(math.ceil(box[2])), x1 + 1), max(int(math.ceil(box[3])), y1 + 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    crop = image.crop((x1, y1, x2, y2))
    atomic_write(out_path, lambda tmp: crop.save(tmp, format="PNG"))
    return out_path


def _pick_sources(boxes_by_image: dict, names: set) -> Dict[str, Tuple[object, np.ndarray]]:
    """For each class in ``names``: (image id, box) of its largest non-difficult instance."""
    best: Dict[str, Tuple[float, object, np.ndarray]] = {}
    for image_id, items in boxes_by_image.items():
        for name, box, difficult in items:
            area = float((box[2] - box[0]) * (box[3] - box[1]))
            if name not in names or difficult or area <= 0:
                continue
            if name not in best or area > best[name][0]:
                best[name] = (area, image_id, box)
    return {name: (v[1], v[2]) for name, v in best.items()}


def _class_images(cats: dict, sources: dict, images: dict, json_path: Path, cache: Path) -> Dict[str, List[Path]]:
    out: Dict[str, List[Path]] = {}
    for cat in cats.values():
        name = cat["name"]
        if cat.get("class_image"):
            path = json_path.parent / str(cat["class_image"])
            if not path.is_file():
                raise InputNotFoundError(f"class image of category {name!r} not found: {path}")
            out[name] = [path]
        elif name in sources:
            image_id, box = sources[name]
            target = cache / f"{cat['id']}_{_safe_name(name)}.png"
            out[name] = [_crop_class_image(images[image_id]["path"], box, target)]
        else:
            logger.warning("%s: category %r has no class_image and no usable instance; dropped", json_path, name)
    return out


def read_coco(json_path: Path, *, image_root: Optional[Path] = None, cache_dir: Optional[Path] = None,
              name: Optional[str] = None) -> Dataset:
    """Read a COCO detection JSON into a :class:`Dataset` (see the module docstring)."""
    json_path = Path(json_path).resolve()
    data = load_coco_json(json_path)
    cats = _categories(data, json_path)
    images = _image_entries(data, json_path, Path(image_root) if image_root else json_path.parent)
    boxes_by_image: Dict[object, list] = {i: [] for i in images}
    for index, ann in enumerate(data["annotations"]):
        image_id, cname, box, difficult = _parse_annotation(ann, index, json_path, images, cats)
        boxes_by_image[image_id].append((cname, box, difficult))
    sources = _pick_sources(boxes_by_image, {c["name"] for c in cats.values() if not c.get("class_image")})
    digest = hashlib.sha1(str(json_path).encode()).hexdigest()[:12]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    class_images = _class_images(cats, sources, images, json_path, cache / f"{json_path.stem}-{digest}")
    excluded = {image_id for image_id, _ in sources.values()}
    records = [_record(i, images[i], boxes_by_image[i], class_images) for i in images if i not in excluded]
    if not records:
        raise InvalidInputError(f"{json_path}: no scene images left after excluding class-image sources (empty dataset)")
    class_names = [c["name"] for c in cats.values() if c["name"] in class_images]
    if not class_names:
        raise InvalidInputError(f"{json_path}: no usable categories (empty dataset)")
    return Dataset(name=name or json_path.stem, class_names=class_names, class_images=class_images,
                   images=records, excluded_images=[images[i]["file_name"] for i in images if i in excluded])


def _record(image_id, entry: dict, items: list, class_images: dict) -> SceneRecord:
    kept = [it for it in items if it[0] in class_images]
    return SceneRecord(
        image_id=str(image_id), file_name=entry["file_name"], path=entry["path"],
        boxes=np.array([it[1] for it in kept], dtype=np.float64).reshape(-1, 4),
        labels=[it[0] for it in kept], difficult=np.array([it[2] for it in kept], dtype=bool),
        size=entry["size"],
    )
