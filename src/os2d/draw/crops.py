"""One image file per detection: the box cut out of the scene.

File names are ``<prefix>_<rank:03d>_<class>_<score:.2f>.png``: ``rank`` counts from 001 in
decreasing score, ``prefix`` defaults to the scene's file stem, and prefix and class name are
sanitised (letters, digits, ``-`` and ``_`` only, at most 60 characters), so a name can never
contain a path separator or ``..`` and every file lands directly in the folder.
"""
from __future__ import annotations

import logging
import math
import re
import unicodedata
from pathlib import Path
from typing import List, Optional, Union

from os2d.data.images import ImageLike, load_image
from os2d.errors import InvalidInputError, InvalidTypeError
from os2d.fileio import atomic_write
from os2d.structures import Detections

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 60


def safe_name(text: str, *, fallback: str) -> str:
    """``text`` as a file-name part: runs of anything but letters, digits, ``-`` become ``_``."""
    text = unicodedata.normalize("NFKC", str(text))
    text = re.sub(r"[^\w-]+", "_", text).strip("_-")[:MAX_NAME_CHARS]
    return text or fallback


def crop_box(box, size) -> tuple:
    """Integer crop ``(left, top, right, bottom)`` covering ``box``, inside the image, at least 1 px."""
    width, height = size
    left = min(max(math.floor(box[0]), 0), width - 1)
    top = min(max(math.floor(box[1]), 0), height - 1)
    right = max(min(math.ceil(box[2]), width), left + 1)
    bottom = max(min(math.ceil(box[3]), height), top + 1)
    return left, top, right, bottom


def _default_prefix(image: ImageLike, detections: Detections) -> str:
    if detections.image_name:
        return Path(detections.image_name).stem
    if isinstance(image, (str, Path)):
        return Path(image).stem
    return "image"


def crop_names(detections: Detections, *, prefix: str) -> List[str]:
    """File names of the crops, in the order of ``detections`` (see the module docstring)."""
    order = sorted(range(len(detections)), key=lambda i: -float(detections.scores[i]))
    rank = {index: r + 1 for r, index in enumerate(order)}
    stem = safe_name(prefix, fallback="image")
    return [f"{stem}_{rank[i]:03d}_{safe_name(name, fallback='class')}_{float(score):.2f}.png"
            for i, (name, score) in enumerate(zip(detections.names, detections.scores.tolist()))]


def save_crops(image: ImageLike, detections: Detections, folder: Union[str, Path], *,
               prefix: Optional[str] = None, overwrite: bool = False) -> List[Path]:
    """Save each detection's crop of ``image`` as a PNG in ``folder`` (created if missing).

    Refuses (:class:`InvalidInputError`, before writing anything) when ``folder`` is a file or a
    crop file exists already, unless ``overwrite``. Returns the paths, in detection order.
    """
    if not isinstance(detections, Detections):
        raise InvalidTypeError(f"expected Detections, got {type(detections).__name__}")
    if len(detections) and not bool(detections.boxes.isfinite().all()):
        raise InvalidInputError("detections hold non-finite box coordinates")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"crops folder {str(folder)!r} exists and is not a folder")
    names = crop_names(detections, prefix=_default_prefix(image, detections) if prefix is None else prefix)
    paths = [folder / name for name in names]
    assert all(p.parent == folder for p in paths), names
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise InvalidInputError(f"crop file exists already (use overwrite): {existing[0]}"
                                + (f" and {len(existing) - 1} more" if len(existing) > 1 else ""))
    pil = load_image(image, what="scene image")
    if tuple(detections.image_size) not in ((0, 0), pil.size):
        raise InvalidInputError(f"detections are for an image of size {tuple(detections.image_size)}, "
                                f"the image to crop is {pil.size}")
    folder.mkdir(parents=True, exist_ok=True)
    for path, box in zip(paths, detections.boxes.tolist()):
        crop = pil.crop(crop_box(box, pil.size))
        atomic_write(path, lambda tmp, crop=crop: crop.save(tmp, format="PNG"))
    logger.info("saved %d crops in %s", len(paths), folder)
    return paths
