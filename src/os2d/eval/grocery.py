"""Grocery-store one-shot recognition check (GroceryStoreDataset layout).

The folder holds ``labels.csv`` (``split, cls, coarse, file``; one product class per photo),
``iconic/<Class>.jpg`` studio packshots and ``photos/<split>/<Class>/*.jpg`` store photos. The
check gives the detector the packshot of **every class that appears in labels.csv** (the 16
packaged products) as class images and runs it on the photos of one split. A photo counts as
recognised when its top-scoring detection is of the photo's class; a photo without any
detection counts as wrong. Reported: top-1 accuracy over photos and per class.

The photos are small (348 px) and the product usually fills most of the photo, so the default
pyramid :data:`DEFAULT_SCALES` puts a product covering 60-90 % of the photo at about 240 px (the
class-image size) on some level: at 320 px a product of 75 % is 240 px.

Detection records use the photo's path relative to the dataset folder (the ``file`` column,
e.g. ``photos/test/Arla-Sour-Milk/Arla-Sour-Milk_001.jpg``) as ``"image"``: file names alone
repeat across splits.

**GroZi-120** (``../shared/data/grozi120``: ``labels.csv`` with ``split, cls, file`` and integer
class names, ``iconic/<cls>.jpg``, ``photos/<cls>/<cls>_video<N>.jpg``) is read the same way, with
two rules of its own (:func:`is_grozi120` recognises the folder by its content):

* **CHECK / TRAIN classes** (:func:`grozi_class_split`): the 100 classes sorted by their numeric
  id; positions 0, 2, 4, ... (ids 0, 2, 4, 7, 9, ...; there is no id 5) are the 50 CHECK classes,
  positions 1, 3, 5, ... the 50 TRAIN classes. Only TRAIN classes may be used for training; the
  check uses only CHECK classes: their class images are the candidates and their photos are scored
  (``load_grocery(..., classes="auto")``, the default; ``"train"`` / ``"all"`` select the others).
* **At most** :data:`GROZI_MAX_PHOTOS_PER_CLASS` (5) **photos per class** by default, spread evenly
  over the class's photos sorted by video number (every CHECK class has 5+ photos: 250 photos),
  because a photo costs about 2 s with 50 candidate classes on one CPU thread. ``max_per_class=None``
  keeps all 1468 CHECK photos.
* Pyramid :data:`GROZI_SCALES` (``GroceryData.default_scales``): the crops are small (median
  153x83 px) and the product fills the crop, so a level of longer side ``L`` shows it at about
  ``0.74 L`` px (``sqrt`` of its area): the grocery-store levels 256-448 px put it at 190-330 px,
  around the 240 px class-image size. On 100 photos of the TRAIN classes (2 per class, TRAIN class
  images as candidates; v1 default model) 256/320/384/448 gave 72 % top-1 and 224/288/352/416 71 %,
  so the grocery-store pyramid is kept.
"""
from __future__ import annotations

import csv
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.eval.evaluate import detect_records
from os2d.structures import Detections

logger = logging.getLogger(__name__)

#: Pyramid levels (longer side in px) for the 348 px store photos.
DEFAULT_SCALES: Tuple[float, ...] = (256.0, 320.0, 384.0, 448.0)
#: Pyramid levels for the GroZi-120 crops (median 153x83 px, the product fills the crop).
GROZI_SCALES: Tuple[float, ...] = DEFAULT_SCALES
#: Default cap on GroZi-120 photos per class (evenly spread over the class's photos).
GROZI_MAX_PHOTOS_PER_CLASS = 5
DEFAULT_SPLIT = "test"
LABELS_FILE = "labels.csv"
ICONIC_FOLDER = "iconic"
_COLUMNS = ("split", "cls", "file")
CLASS_SUBSETS = ("auto", "all", "check", "train")


@dataclass
class GroceryPhoto:
    """One store photo: ``name`` (path relative to the dataset root), ``path``, ``label`` (class)."""

    name: str
    path: Path
    label: str
    split: str


@dataclass
class GroceryData:
    """Class images (packshots) and the photos of one split."""

    root: Path
    split: str
    class_images: "OrderedDict[str, List[Path]]"
    photos: List[GroceryPhoto] = field(default_factory=list)
    kind: str = "grocery-store"  # or "grozi120"
    default_scales: Tuple[float, ...] = DEFAULT_SCALES

    @property
    def class_names(self) -> List[str]:
        return list(self.class_images)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.split}"

    def __len__(self) -> int:
        return len(self.photos)

    def head(self, n: int) -> "GroceryData":
        """The first ``n`` photos, taken round-robin over classes (photo 1 of each class, then 2...)."""
        if n < 1:
            raise InvalidInputError(f"max images must be at least 1, got {n}")
        by_class: Dict[str, List[GroceryPhoto]] = OrderedDict()
        for photo in self.photos:
            by_class.setdefault(photo.label, []).append(photo)
        order: List[GroceryPhoto] = []
        depth = 0
        while len(order) < min(n, len(self.photos)):
            for photos in by_class.values():
                if depth < len(photos) and len(order) < n:
                    order.append(photos[depth])
            depth += 1
        return GroceryData(self.root, self.split, self.class_images, order, self.kind, self.default_scales)


def is_grocery_store(path: Path) -> bool:
    """Whether ``path`` is a folder laid out like the grocery-store data (labels.csv + iconic/)."""
    path = Path(path)
    return path.is_dir() and (path / LABELS_FILE).is_file() and (path / ICONIC_FOLDER).is_dir()


def find_grocery_store(spec: str, data_root: Optional[Path] = None) -> Optional[Path]:
    """The grocery-store folder named by ``spec`` (a path, or a folder under ``data_root``), or None."""
    candidates = [Path(spec).expanduser()]
    if data_root is not None:
        candidates.append(Path(data_root) / spec)
    for cand in candidates:
        if is_grocery_store(cand):
            return cand
    return None


def _natural_key(text: str) -> List[object]:
    """Sort key comparing digit runs as numbers (``video2`` < ``video10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def is_grozi120(fieldnames: Sequence[str], class_names: Sequence[str]) -> bool:
    """Whether a labels file is GroZi-120's: no ``coarse`` column and integer class names only."""
    return "coarse" not in fieldnames and bool(class_names) and all(c.isdigit() for c in class_names)


def grozi_class_split(class_names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``(train, check)`` GroZi-120 classes: sorted by numeric id, positions 0, 2, 4, ... are CHECK
    classes, positions 1, 3, 5, ... TRAIN classes (50 / 50 for the 100 classes)."""
    bad = [c for c in class_names if not str(c).isdigit()]
    if bad:
        raise InvalidInputError(f"GroZi-120 class names must be integers, got {bad[:5]}")
    ordered = sorted(set(class_names), key=int)
    return ordered[1::2], ordered[0::2]


def evenly_spaced(items: Sequence, k: Optional[int]) -> List:
    """``k`` items spread evenly over ``items`` (first and last included); all if ``k`` is None."""
    if k is None or len(items) <= k:
        return list(items)
    if k < 1:
        raise InvalidInputError(f"max photos per class must be at least 1, got {k}")
    if k == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _read_labels(root: Path) -> Tuple[List[str], List[dict]]:
    labels_path = root / LABELS_FILE
    if not labels_path.is_file():
        raise InputNotFoundError(f"grocery-store labels file not found: {labels_path}")
    with open(labels_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fieldnames = list(reader.fieldnames or [])
        missing = [c for c in _COLUMNS if c not in fieldnames]
        if missing:
            raise InvalidInputError(f"{labels_path}: missing columns {missing} (have {fieldnames})")
        rows = list(reader)
    if not rows:
        raise InvalidInputError(f"{labels_path}: no photos listed")
    return fieldnames, rows


def _select_classes(names: List[str], grozi: bool, classes: str) -> List[str]:
    if classes not in CLASS_SUBSETS:
        raise InvalidInputError(f"classes must be one of {', '.join(CLASS_SUBSETS)}, got {classes!r}")
    if classes == "all" or (classes == "auto" and not grozi):
        return names
    if not grozi:
        raise InvalidInputError(f"classes={classes!r} needs a GroZi-120 folder (integer class names, no 'coarse' "
                                f"column)")
    train, check = grozi_class_split(names)
    return train if classes == "train" else check


def load_grocery(root: Path, *, split: Optional[str] = DEFAULT_SPLIT, classes: str = "auto",
                 max_per_class: Union[int, None, str] = "auto") -> GroceryData:
    """Read ``labels.csv``: the packshot of every class kept, and the photos of ``split``.

    ``split=None`` or ``"all"`` keeps every photo. ``classes``: ``auto`` (GroZi-120: the CHECK
    classes of :func:`grozi_class_split`; otherwise all), ``all``, ``check`` or ``train`` (GroZi-120
    only). ``max_per_class``: keep at most this many photos per class, evenly spread over the class's
    photos sorted by name (``auto``: :data:`GROZI_MAX_PHOTOS_PER_CLASS` for GroZi-120, else no cap;
    ``None``: no cap). Raises ``FileNotFoundError`` for a missing labels file, packshot or photo and
    ``ValueError`` for an unknown split or a malformed CSV.
    """
    root = Path(root)
    fieldnames, rows = _read_labels(root)
    all_classes = sorted({r["cls"] for r in rows})
    grozi = is_grozi120(fieldnames, all_classes)
    kept = _select_classes(all_classes, grozi, classes)
    class_images: "OrderedDict[str, List[Path]]" = OrderedDict()
    for name in sorted(kept, key=_natural_key):
        packshot = root / ICONIC_FOLDER / f"{name}.jpg"
        if not packshot.is_file():
            raise InputNotFoundError(f"packshot of class {name!r} not found: {packshot}")
        class_images[name] = [packshot]
    splits = sorted({r["split"] for r in rows})
    if split is not None and split != "all" and split not in splits:
        raise InvalidInputError(f"unknown split {split!r} for grocery-store {root}; available: {splits + ['all']}")
    cap = (GROZI_MAX_PHOTOS_PER_CLASS if grozi else None) if max_per_class == "auto" else max_per_class
    if isinstance(cap, str) or (cap is not None and cap < 1):
        raise InvalidInputError(f"max photos per class must be 'auto', None or at least 1, got {max_per_class!r}")
    by_class: Dict[str, List[str]] = OrderedDict((name, []) for name in class_images)
    for row in rows:
        if row["cls"] in by_class and split in (None, "all", row["split"]):
            by_class[row["cls"]].append(row["file"])
    chosen = {f for files in by_class.values() for f in evenly_spaced(sorted(files, key=_natural_key), cap)}
    photos = []
    for row in rows:  # in the order of labels.csv
        if row["file"] not in chosen or row["cls"] not in by_class:
            continue
        path = root / row["file"]
        if not path.is_file():
            raise InputNotFoundError(f"grocery-store photo not found: {path} ({root / LABELS_FILE})")
        photos.append(GroceryPhoto(name=row["file"], path=path, label=row["cls"], split=row["split"]))
    return GroceryData(root, split or "all", class_images, photos, kind="grozi120" if grozi else "grocery-store",
                       default_scales=GROZI_SCALES if grozi else DEFAULT_SCALES)


def top1_predictions(records: Sequence[dict], names: Sequence[str]) -> Dict[str, Optional[str]]:
    """Class of the top-scoring record of each photo (``None`` when a photo has none).

    Ties keep the first record in the list (detectors list detections by decreasing score).
    """
    best: Dict[str, Tuple[float, str]] = {}
    wanted = set(names)
    for rec in records:
        image = rec["image"]
        if image not in wanted:
            raise InvalidInputError(f"detection for image {image!r}, which is not a photo of this check")
        if image not in best or rec["score"] > best[image][0]:
            best[image] = (float(rec["score"]), rec["class"])
    return {name: best[name][1] if name in best else None for name in names}


def top1_accuracy(predicted: Sequence[Optional[str]], truth: Sequence[str],
                  class_names: Optional[Sequence[str]] = None) -> dict:
    """Top-1 accuracy of predicted classes (``None`` = no detection = wrong).

    Returns ``accuracy``, ``accuracy_per_class`` (class -> accuracy, ``None`` for classes without
    photos), ``mean_class_accuracy`` (mean over classes with photos), ``num_photos``,
    ``num_correct``, ``num_without_detections``, ``photos_per_class``.
    """
    if len(predicted) != len(truth):
        raise InvalidInputError(f"{len(predicted)} predictions for {len(truth)} photos")
    if not truth:
        raise InvalidInputError("no photos to compute an accuracy on")
    names = list(class_names) if class_names is not None else sorted(set(truth))
    total = {n: 0 for n in names}
    correct = {n: 0 for n in names}
    for pred, true in zip(predicted, truth):
        if true not in total:
            raise InvalidInputError(f"photo class {true!r} is not one of the classes {names}")
        total[true] += 1
        correct[true] += int(pred == true)
    per_class = {n: (correct[n] / total[n] if total[n] else None) for n in names}
    present = [v for v in per_class.values() if v is not None]
    num_correct = sum(correct.values())
    return {
        "accuracy": num_correct / len(truth),
        "accuracy_per_class": per_class,
        "mean_class_accuracy": sum(present) / len(present),
        "num_photos": len(truth), "num_correct": num_correct,
        "num_without_detections": sum(p is None for p in predicted),
        "photos_per_class": total,
    }


def evaluate_grocery_records(data: GroceryData, records: Sequence[dict]) -> dict:
    """Top-1 accuracy of detection records on the photos of ``data`` (see :func:`top1_accuracy`)."""
    unknown = sorted({r["class"] for r in records} - set(data.class_names))
    if unknown:
        raise InvalidInputError(f"detections of classes {unknown[:5]} that are not grocery-store classes")
    names = [p.name for p in data.photos]
    top = top1_predictions(records, names)
    result = top1_accuracy([top[n] for n in names], [p.label for p in data.photos], data.class_names)
    result.update({"dataset": data.name, "task": f"{data.kind} top-1 recognition",
                   "num_classes": len(data.class_names), "num_detections": len(records),
                   "predictions": {n: top[n] for n in names}})
    return result


def run_on_grocery(data: GroceryData, detect_fn: Callable[[Path], Detections], *,
                   progress: bool = True) -> List[dict]:
    """``detect_fn(photo path) -> Detections`` on every photo; records named by ``photo.name``."""
    return detect_records(((photo.path, photo.name) for photo in data.photos), detect_fn,
                          desc=f"detect {data.name}", total=len(data.photos), progress=progress)


def format_accuracy_table(result: dict) -> str:
    """Plain-text per-class accuracy table of an :func:`evaluate_grocery_records` result."""
    names = list(result["accuracy_per_class"])
    width = max([len("class")] + [len(n) for n in names])
    lines = [f"{'class':<{width}}  {'top-1':>6}  {'photos':>6}", "-" * (width + 16)]
    for name in names:
        acc = result["accuracy_per_class"][name]
        lines.append(f"{name:<{width}}  {'-' if acc is None else f'{100 * acc:5.1f}':>6}  "
                     f"{result['photos_per_class'][name]:>6}")
    lines.append("-" * (width + 16))
    lines.append(f"{'all':<{width}}  {100 * result['accuracy']:6.1f}  {result['num_photos']:>6}")
    return "\n".join(lines)
