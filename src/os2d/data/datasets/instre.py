"""Build the OS2D ``instre.csv`` from the published INSTRE files (``gnd_instre.mat`` + images).

The published INSTRE data (``instre.tar.gz`` and Iscen et al.'s ``gnd_instre.mat``) has no OS2D
CSV; the reference code derives one on first use. This module does the same conversion:

* every query of ``gnd_instre.mat`` (``qimlist``) becomes a class, except INSTRE-M queries
  (their box covers two objects); class id = query index, class image = the query image cropped
  to the query box (``x1, y1, x2, y2`` in the .mat), saved as
  ``<index:05d>_<query path with '/' replaced by '_'>``;
* every positive database image of the query (``gnd[i][0]``, 1-based indices into ``imlist``)
  gets the boxes of its ``.txt`` file (one ``x y w h`` line per object, next to the image); for
  an INSTRE-S1 query and an INSTRE-M image, only box ``a`` (first line) or ``b`` (second line)
  is kept, chosen by the third character of the query's folder name.

The CSV and class images are written to ``out_dir`` (``out_dir/instre.csv``,
``out_dir/images/``), so the user's data folder is not modified unless ``out_dir`` points there.
``scipy`` is needed to read the .mat file.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import List, Sequence, Tuple

from os2d.data.datasets.base import read_image_size
from os2d.data.images import load_image
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("gtbboxid", "classid", "classfilename", "imageid", "imagefilename", "difficult",
               "lx", "ty", "rx", "by")


def _load_mat(mat_path: Path) -> dict:
    if not mat_path.is_file():
        raise InputNotFoundError(f"INSTRE annotation file not found: {mat_path}")
    try:
        import scipy.io
    except ImportError as err:  # pragma: no cover - scipy ships with scikit-image
        raise RuntimeError("reading gnd_instre.mat needs scipy (pip install scipy)") from err
    data = scipy.io.loadmat(str(mat_path))
    for key in ("qimlist", "imlist", "gnd"):
        if key not in data:
            raise InvalidInputError(f"{mat_path} lacks the variable {key!r}; is it gnd_instre.mat?")
    return {k: data[k].flatten() for k in ("qimlist", "imlist", "gnd")}


def _as_str(entry) -> str:
    return str(entry[0]) if hasattr(entry, "__len__") and not isinstance(entry, str) else str(entry)


def read_box_file(path: Path) -> List[Tuple[int, int, int, int]]:
    """Boxes ``(x, y, w, h)`` of an INSTRE ``.txt`` file, one per non-empty line."""
    if not path.is_file():
        raise InputNotFoundError(f"INSTRE box file not found: {path}")
    boxes = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            parts = line.split()
            if len(parts) != 4:
                raise InvalidInputError(f"{path}:{n}: expected 'x y w h', got {line!r}")
            boxes.append(tuple(int(float(p)) for p in parts))
    return boxes


def _boxes_for(query: str, image: str, root: Path) -> List[Tuple[int, int, int, int]]:
    boxes = read_box_file(root / (image.rsplit(".", 1)[0] + ".txt"))
    q_set, i_set = query.split("/")[0].lower(), image.split("/")[0].lower()
    if q_set == "instre-s1" and i_set == "instre-m":
        if len(boxes) != 2:
            raise InvalidInputError(f"INSTRE-M image {image} should have 2 boxes, has {len(boxes)}")
        return [boxes[0 if query.split("/")[1][2] == "a" else 1]]
    if q_set != i_set:
        raise InvalidInputError(f"unexpected positive {image} for query {query}")
    return boxes


def _relative(box: Sequence[int], size: Tuple[int, int]) -> Tuple[float, float, float, float]:
    w, h = size
    lx, ty = box[0] / w, box[1] / h
    return lx, ty, lx + box[2] / w, ty + box[3] / h


def _class_rows(index: int, query: str, gnd, imlist, root: Path, image_dir: Path, start: int) -> List[dict]:
    class_file = f"{index:05d}_{'_'.join(query.split('/'))}"
    target = image_dir / class_file
    if not target.is_file():
        bbox = [float(v) for v in gnd[1].flatten()[:4]]
        load_image(root / query, what="INSTRE query image").crop(tuple(bbox)).save(target)
    rows = []
    for image_index in (gnd[0].flatten().astype(int) - 1):
        image = _as_str(imlist[image_index])
        size = read_image_size(root / image)
        for box in _boxes_for(query, image, root):
            lx, ty, rx, by = _relative(box, size)
            rows.append({"gtbboxid": start + len(rows), "classid": index, "classfilename": class_file,
                         "imageid": int(image_index), "imagefilename": image, "difficult": 0,
                         "lx": lx, "ty": ty, "rx": rx, "by": by})
    return rows


def build_instre_csv(instre_root: Path, *, out_dir: Path) -> Path:
    """Write ``out_dir/instre.csv`` and ``out_dir/images/`` from ``instre_root/gnd_instre.mat``."""
    instre_root, out_dir = Path(instre_root), Path(out_dir)
    data = _load_mat(instre_root / "gnd_instre.mat")
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows: List[dict] = []
    for index, entry in enumerate(data["qimlist"]):
        query = _as_str(entry)
        if query.split("/")[0].lower() == "instre-m":
            continue
        rows += _class_rows(index, query, data["gnd"][index], data["imlist"], instre_root, image_dir, len(rows))
    csv_path = out_dir / "instre.csv"
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(csv_path, write)
    logger.info("built %s: %d boxes", csv_path, len(rows))
    return csv_path
