"""Reader for the reference OS2D dataset layout (GroZi-3.2k, dairy, paste, INSTRE, ...).

Layout of a dataset folder ``<root>``::

    <root>/classes/<name>.csv     one row per box
    <root>/classes/images/        class (query) images, named by the ``classfilename`` column
    <root>/src/...                scene images, found by ``imagefilename`` (a path relative to
                                  the scene folder, or a bare file name searched recursively)

CSV columns: ``imageid, imagefilename, classid, classfilename, gtbboxid, difficult, lx, ty, rx,
by`` plus optional ``split`` and ``classname``. ``lx, ty, rx, by`` are box corners relative to
the image width/height (0..1); the image size is read from the file header. Missing
``imagefilename`` / ``classfilename`` default to ``<imageid>.jpg`` / ``<classid>.jpg`` as in
the reference. The class name is ``classname`` when present, else the class image file stem.
Extra columns (e.g. the unnamed index column written by pandas) are ignored.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from os2d.data.datasets.base import Dataset, SceneRecord, read_image_size
from os2d.errors import InputNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("imageid", "imagefilename", "classid", "classfilename", "gtbboxid",
                    "difficult", "lx", "ty", "rx", "by")
#: Relative coordinates may leave [0, 1] by this much (then they are clipped); more is an error.
RELATIVE_TOLERANCE = 0.01
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no", ""}
_IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


@dataclass(frozen=True)
class CsvRow:
    line: int
    image_id: str
    image_file: str
    class_id: str
    class_file: str
    class_name: str
    difficult: bool
    box: Tuple[float, float, float, float]
    split: str


def read_csv_text(csv_path: Path) -> str:
    """The text of an annotation CSV (UTF-8, optional BOM); errors name the file and line."""
    if not csv_path.exists():
        raise InputNotFoundError(f"annotation CSV not found: {csv_path}")
    if not csv_path.is_file():
        raise InvalidInputError(f"annotation CSV is not a regular file: {csv_path}")
    data = csv_path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start:err.start + 4]
        raise InvalidInputError(f"{csv_path}:{line}: not UTF-8 text (byte {bad[:1]!r} at offset {err.start}); "
                                f"save the CSV as UTF-8") from None


def read_csv_rows(csv_path: Path) -> List[dict]:
    """Rows of an annotation CSV as dicts (header names stripped), with reference defaults."""
    text = read_csv_text(csv_path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if reader.fieldnames is None:
            raise InvalidInputError(f"annotation CSV is empty (no header): {csv_path}")
        columns = [c.strip() for c in reader.fieldnames]
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except csv.Error as err:
        raise InvalidInputError(f"{csv_path}:{reader.line_num + 1}: not a valid CSV line ({err})") from None
    if "imagefilename" not in columns and "imageid" in columns:
        for r in rows:
            r["imagefilename"] = f"{r['imageid']}.jpg"
        columns.append("imagefilename")
    if "classfilename" not in columns and "classid" in columns:
        for r in rows:
            r["classfilename"] = f"{r['classid']}.jpg"
        columns.append("classfilename")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InvalidInputError(f"annotation CSV {csv_path} is missing columns {missing} (has {columns})")
    if not rows:
        raise InvalidInputError(f"annotation CSV has no rows (empty dataset): {csv_path}")
    return rows


def _parse_float(value: str, *, column: str, where: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise InvalidInputError(f"{where}: column {column!r} is not a number: {value!r}") from None
    if not math.isfinite(out):
        raise InvalidInputError(f"{where}: column {column!r} is not finite: {value!r}")
    return out


def _parse_bool(value: str, *, where: str) -> bool:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidInputError(f"{where}: column 'difficult' must be 0 or 1, got {value!r}")


def _parse_box(row: dict, *, where: str) -> Tuple[float, float, float, float]:
    lx, ty, rx, by = (_parse_float(row[c], column=c, where=where) for c in ("lx", "ty", "rx", "by"))
    lo, hi = -RELATIVE_TOLERANCE, 1.0 + RELATIVE_TOLERANCE
    if not all(lo <= v <= hi for v in (lx, ty, rx, by)):
        raise InvalidInputError(f"{where}: relative box {[lx, ty, rx, by]} lies outside the image "
                         f"(coordinates must be within [0, 1])")
    if rx < lx or by < ty:
        raise InvalidInputError(f"{where}: box {[lx, ty, rx, by]} has rx < lx or by < ty")
    return tuple(min(max(v, 0.0), 1.0) for v in (lx, ty, rx, by))


def parse_row(row: dict, *, line: int, csv_path: Path) -> CsvRow:
    """Validate one CSV row (``line`` is its 1-based line number in the file)."""
    where = f"{csv_path}:{line}"
    for column in ("imagefilename", "classfilename"):
        if not row[column]:
            raise InvalidInputError(f"{where}: column {column!r} is empty")
    class_name = row.get("classname") or Path(row["classfilename"]).stem
    return CsvRow(
        line=line, image_id=row["imageid"], image_file=row["imagefilename"], class_id=row["classid"],
        class_file=row["classfilename"], class_name=class_name,
        difficult=_parse_bool(row["difficult"], where=where), box=_parse_box(row, where=where),
        split=row.get("split", ""),
    )


class SceneIndex:
    """Finds scene files under a root: ``root/<name>`` first, else by file name (recursive)."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise InputNotFoundError(f"scene image folder not found: {root}")
        self.root = root
        self._by_name: Optional[Dict[str, List[Path]]] = None

    def _index(self) -> Dict[str, List[Path]]:
        if self._by_name is None:
            self._by_name = {}
            for path in sorted(self.root.rglob("*")):
                if path.suffix.lower() in _IMAGE_EXTENSIONS and path.is_file():
                    self._by_name.setdefault(path.name, []).append(path)
        return self._by_name

    def resolve(self, file_name: str) -> Path:
        direct = self.root / file_name
        if direct.is_file():
            return direct
        found = self._index().get(Path(file_name).name, [])
        if not found:
            raise InputNotFoundError(f"scene image {file_name!r} not found under {self.root}")
        if len(found) > 1:
            raise InvalidInputError(f"scene image {file_name!r} is ambiguous under {self.root}: "
                             f"{[str(p) for p in found[:4]]}; pass the scene folder explicitly")
        return found[0]


def _group_by_image(rows: Sequence[CsvRow], csv_path: Path) -> Dict[str, List[CsvRow]]:
    groups: Dict[str, List[CsvRow]] = {}
    ids: Dict[str, str] = {}
    for r in rows:
        if ids.setdefault(r.image_file, r.image_id) != r.image_id:
            raise InvalidInputError(f"{csv_path}:{r.line}: image {r.image_file!r} has two image ids "
                             f"({ids[r.image_file]!r} and {r.image_id!r})")
        groups.setdefault(r.image_file, []).append(r)
    return groups


def _scene_record(file_name: str, rows: Sequence[CsvRow], scenes: SceneIndex) -> SceneRecord:
    path = scenes.resolve(file_name)
    w, h = read_image_size(path)
    rel = np.array([r.box for r in rows], dtype=np.float64).reshape(-1, 4)
    boxes = rel * np.array([w, h, w, h], dtype=np.float64)
    return SceneRecord(
        image_id=rows[0].image_id, file_name=file_name, path=path, boxes=boxes,
        labels=[r.class_name for r in rows], difficult=np.array([r.difficult for r in rows], dtype=bool),
        size=(w, h), splits=[r.split for r in rows],
    )


def _class_order(rows: Sequence[CsvRow]) -> List[str]:
    """Class names sorted by numeric class id when all ids are integers, else first appearance."""
    first: Dict[str, Tuple[int, str]] = {}
    for i, r in enumerate(rows):
        first.setdefault(r.class_name, (i, r.class_id))
    try:
        return sorted(first, key=lambda c: (int(first[c][1]), first[c][0]))
    except ValueError:
        return sorted(first, key=lambda c: first[c][0])


def _class_images(rows: Sequence[CsvRow], class_dir: Path) -> Dict[str, List[Path]]:
    out: Dict[str, List[Path]] = {}
    for r in rows:
        path = class_dir / r.class_file
        files = out.setdefault(r.class_name, [])
        if path not in files:
            if not path.is_file():
                raise InputNotFoundError(f"class image for class {r.class_name!r} not found: {path}")
            files.append(path)
    return out


def read_os2d_csv(csv_path: Path, *, class_image_dir: Optional[Path] = None,
                  image_root: Optional[Path] = None, name: Optional[str] = None) -> Dataset:
    """Read an OS2D-layout annotation CSV into a :class:`Dataset` (all rows, no split applied).

    Args:
        csv_path: the CSV, normally ``<root>/classes/<name>.csv``.
        class_image_dir: class image folder; default ``<csv folder>/images``.
        image_root: scene folder; default ``<root>/src`` where ``<root>`` is the CSV's grandparent.
        name: dataset name; default the CSV file stem.
    """
    csv_path = Path(csv_path)
    raw = read_csv_rows(csv_path)
    rows = [parse_row(r, line=i + 2, csv_path=csv_path) for i, r in enumerate(raw)]
    class_dir = Path(class_image_dir) if class_image_dir is not None else csv_path.parent / "images"
    scene_root = Path(image_root) if image_root is not None else csv_path.parent.parent / "src"
    class_images = _class_images(rows, class_dir)
    scenes = SceneIndex(scene_root)
    records = [_scene_record(f, g, scenes) for f, g in _group_by_image(rows, csv_path).items()]
    dataset = Dataset(name=name or csv_path.stem, class_names=_class_order(rows),
                      class_images=class_images, images=records)
    logger.info("read %s: %d images, %d boxes, %d classes", dataset.name, len(dataset),
                dataset.num_boxes, len(dataset.class_names))
    return dataset
