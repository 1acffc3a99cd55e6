"""Class sources: what a class's dataset class image is and what gets pasted into scenes.

By default a class is one image: it is the class image of the dataset and it is what gets
pasted (cut out by the mask mode). A *class table* separates the two, so that for example a
product cut-out (RGBA) is pasted while its packshot is the class image, or real in-store crops
of a product are pasted while its iconic image is the class image.

Class table (CSV, one row per paste image; paths relative to the table's folder)::

    name,class_image,paste_image,group,mask
    Pringles-127406,cutouts/127406.png,,Pringles,auto
    grozi-1,grozi/iconic/1.jpg,grozi/photos/1/1_video3.jpg,,none
    grozi-1,grozi/iconic/1.jpg,grozi/photos/1/1_video9.jpg,,none

``paste_image`` empty: the class image itself is pasted. ``group`` (optional): classes of one
group (e.g. a brand) are put side by side on shelves (``layout: shelf``). ``mask`` (optional):
a mask mode of :data:`~os2d.synth.config.MASK_MODES` for that row (default: the config's). An
image with an alpha channel is cut out by its alpha (>= 128) in ``auto`` and ``white`` modes.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from os2d.data.images import load_image
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.synth.config import MASK_MODES
from os2d.synth.objects import ClassImage, ClassSource, foreground_mask, pick_appearance  # noqa: F401 (re-exported)

TABLE_COLUMNS = ("name", "class_image", "paste_image", "group", "mask")
_ALPHA_ON = 128


def alpha_mask(path: Path) -> Optional[np.ndarray]:
    """``bool[h, w]`` alpha >= 128 of an image file with an alpha channel, else None."""
    with Image.open(path) as img:
        if img.mode not in ("RGBA", "LA", "PA") and not (img.mode == "P" and "transparency" in img.info):
            return None
        return np.asarray(img.convert("RGBA"))[..., 3] >= _ALPHA_ON


def load_appearance(path: Path, *, name: str, mask: str = "auto", tolerance: int = 30) -> ClassImage:
    """A paste image: RGB (transparent parts composited on white) and its mask, cropped to the
    mask's box. Alpha, if present, is the mask (modes ``auto``/``white``); ``none`` pastes all."""
    if mask not in MASK_MODES:
        raise InvalidInputError(f"mask mode must be one of {', '.join(MASK_MODES)}, got {mask!r} ({path})")
    path = Path(path)
    rgb = np.asarray(load_image(path, what="class image"))
    alpha = alpha_mask(path) if mask != "none" else None
    if alpha is not None and alpha.any():
        fg = alpha
    else:
        fg = foreground_mask(rgb, mask, tolerance)
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return ClassImage(name=name, image=np.ascontiguousarray(rgb[y0:y1, x0:x1]),
                      mask=np.ascontiguousarray(fg[y0:y1, x0:x1]), path=path, data=None,
                      masked=not bool(fg.all()))


def sources_from_images(paths: Sequence[Path], *, mask: str, tolerance: int = 30) -> List[ClassSource]:
    """One source per image file (name = stem; the image is both class image and paste image),
    sorted by name; duplicate names are an error."""
    by_name: Dict[str, Path] = {}
    for path in paths:
        path = Path(path)
        if path.stem in by_name:
            raise InvalidInputError(f"two class images have the same name {path.stem!r}: {by_name[path.stem]} and {path}")
        by_name[path.stem] = path
    return [ClassSource(name=n, class_file=by_name[n], group=None,
                        appearances=[load_appearance(by_name[n], name=n, mask=mask, tolerance=tolerance)])
            for n in sorted(by_name)]


def _table_rows(table: Path) -> List[dict]:
    if not table.is_file():
        raise InputNotFoundError(f"class table not found: {table}")
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("name", "class_image") if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInputError(f"class table {table}: missing columns {missing} (have {reader.fieldnames})")
        rows = list(reader)
    if not rows:
        raise InvalidInputError(f"class table {table}: no classes listed")
    return rows


def read_class_table(table: Path, *, mask: str = "auto", tolerance: int = 30) -> List[ClassSource]:
    """Class sources of a class table (see the module docstring), sorted by name."""
    table = Path(table)
    sources: Dict[str, ClassSource] = {}
    for line, row in enumerate(_table_rows(table), start=2):
        name = (row.get("name") or "").strip()
        if not name or any(c in name for c in "/\\\r\n"):
            raise InvalidInputError(f"class table {table}, line {line}: bad class name {name!r}")
        class_file = table.parent / row["class_image"].strip()
        if not class_file.is_file():
            raise InputNotFoundError(f"class table {table}, line {line}: class image not found: {class_file}")
        paste = table.parent / row["paste_image"].strip() if (row.get("paste_image") or "").strip() else class_file
        if not paste.is_file():
            raise InputNotFoundError(f"class table {table}, line {line}: paste image not found: {paste}")
        group = (row.get("group") or "").strip() or None
        src = sources.setdefault(name, ClassSource(name=name, class_file=class_file, group=group))
        if src.class_file != class_file or src.group != group:
            raise InvalidInputError(f"class table {table}, line {line}: class {name!r} has another class image or "
                                    f"group than on an earlier line")
        row_mask = (row.get("mask") or "").strip() or mask
        src.appearances.append(load_appearance(paste, name=name, mask=row_mask, tolerance=tolerance))
    return [sources[n] for n in sorted(sources)]
