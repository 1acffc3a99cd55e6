"""The dataset interface shared by all readers: classes, class images and annotated scenes.

A :class:`Dataset` is plain Python (not a ``torch.utils.data.Dataset``): a list of
:class:`SceneRecord` (one per scene image, boxes in original pixels) plus, for each class name,
its class (query) image file(s). Readers live in :mod:`os2d.data.datasets.os2d_csv` and
:mod:`os2d.data.datasets.coco`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from os2d.data.images import check_image_file
from os2d.errors import InputTooLargeError, InvalidInputError

logger = logging.getLogger(__name__)

#: EXIF orientations that swap width and height when applied (``load_image`` applies them).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION_TAG = 0x0112


@dataclass
class SceneRecord:
    """One annotated scene image.

    Attributes:
        image_id: identifier from the annotation file (as a string).
        file_name: name used in detections JSON (``"image"``), unique in the dataset.
        path: the image file.
        boxes: ``[N, 4]`` float64, xyxy in pixels of the original image.
        labels: class name of each box.
        difficult: ``[N]`` bool, boxes ignored by the evaluation.
        size: (width, height) of the image when known.
        splits: split name of each box (empty strings when the dataset has no splits).
    """

    image_id: str
    file_name: str
    path: Path
    boxes: np.ndarray
    labels: List[str]
    difficult: np.ndarray
    size: Optional[Tuple[int, int]] = None
    splits: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        self.labels = list(self.labels)
        if not self.splits:
            self.splits = [""] * len(self.labels)
        n = self.boxes.shape[0]
        assert len(self.labels) == n and self.difficult.shape == (n,) and len(self.splits) == n

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: np.ndarray) -> "SceneRecord":
        """The same scene with only the boxes where ``keep`` (bool ``[N]``) is true."""
        idx = np.flatnonzero(keep)
        return replace(
            self, boxes=self.boxes[idx], labels=[self.labels[i] for i in idx],
            difficult=self.difficult[idx], splits=[self.splits[i] for i in idx],
        )


@dataclass
class Dataset:
    """Classes with their class images and annotated scene images.

    Attributes:
        name: dataset name (used in logs and result files).
        class_names: class names, in evaluation order.
        class_images: class name -> class image file(s).
        images: the scenes to evaluate on.
        excluded_images: file names of scenes left out on purpose (e.g. COCO class-image sources).
    """

    name: str
    class_names: List[str]
    class_images: Dict[str, List[Path]]
    images: List[SceneRecord]
    excluded_images: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = [c for c in self.class_names if not self.class_images.get(c)]
        if missing:
            raise InvalidInputError(f"dataset {self.name!r}: classes without a class image: {missing}")
        if len(set(self.class_names)) != len(self.class_names):
            raise InvalidInputError(f"dataset {self.name!r}: duplicate class names in {self.class_names}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        return sum(len(r) for r in self.images)

    @property
    def splits(self) -> List[str]:
        """Split names present in the annotations (sorted)."""
        return sorted({s for r in self.images for s in r.splits if s})

    def record(self, file_name: str) -> SceneRecord:
        """The scene whose ``file_name`` is given; ``ValueError`` if absent."""
        for rec in self.images:
            if rec.file_name == file_name:
                return rec
        raise InvalidInputError(f"image {file_name!r} is not in dataset {self.name!r}")

    def filter_split(self, split: Union[str, Sequence[str]], *,
                     image_splits: Optional[Sequence[str]] = None) -> "Dataset":
        """Boxes of the given split(s), on the images that have boxes of ``image_splits``.

        ``image_splits`` defaults to ``split``; a wider set keeps images without boxes of the
        split (they then only contribute false positives), as the reference GroZi val subsets.
        ``"val-all"``, when not a split name itself, means every split starting with ``val``.
        """
        wanted = self._resolve_splits(split)
        image_wanted = self._resolve_splits(image_splits) if image_splits is not None else wanted
        kept = []
        for rec in self.images:
            if not any(s in image_wanted for s in rec.splits):
                continue
            kept.append(rec.select(np.array([s in wanted for s in rec.splits], dtype=bool)))
        present = {lab for rec in kept for lab in rec.labels}
        classes = [c for c in self.class_names if c in present]
        label = split if isinstance(split, str) else "+".join(split)
        return self._derive(f"{self.name}:{label}", classes, kept)

    def _resolve_splits(self, split: Union[str, Sequence[str]]) -> set:
        available = self.splits
        if not available:
            raise InvalidInputError(f"dataset {self.name!r} has no splits (no 'split' column); got split {split!r}")
        names = [split] if isinstance(split, str) else list(split)
        out = set()
        for name in names:
            if name in available:
                out.add(name)
            elif name == "val-all" and any(s.startswith("val") for s in available):
                out.update(s for s in available if s.startswith("val"))
            else:
                raise InvalidInputError(f"unknown split {name!r} for dataset {self.name!r}; available: {available}")
        return out

    def subset(self, *, classes: Optional[Sequence[str]] = None, file_names: Optional[Sequence[str]] = None,
               drop_empty_images: bool = False) -> "Dataset":
        """Only the given classes (boxes of others dropped) and/or images (by file name)."""
        keep_classes = list(self.class_names) if classes is None else list(classes)
        unknown = [c for c in keep_classes if c not in self.class_images]
        if unknown:
            raise InvalidInputError(f"unknown classes {unknown} for dataset {self.name!r}")
        images = self.images
        if file_names is not None:
            by_name = {r.file_name: r for r in self.images}
            missing = [f for f in file_names if f not in by_name]
            if missing:
                raise InvalidInputError(f"images {missing[:5]} are not in dataset {self.name!r}")
            images = [by_name[f] for f in file_names]
        wanted = set(keep_classes)
        kept = [r.select(np.array([lab in wanted for lab in r.labels], dtype=bool)) for r in images]
        if drop_empty_images:
            kept = [r for r in kept if len(r)]
        return self._derive(self.name, keep_classes, kept)

    def _derive(self, name: str, classes: List[str], images: List[SceneRecord]) -> "Dataset":
        if not images:
            raise InvalidInputError(f"dataset {name!r} is empty: no scene images left")
        return Dataset(name=name, class_names=classes,
                       class_images={c: list(self.class_images[c]) for c in classes},
                       images=images, excluded_images=list(self.excluded_images))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/os2d/datasets`` (``~/.cache`` when unset): generated class images/CSVs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "os2d" / "datasets"


def read_image_size(path: Path, *, what: str = "scene image") -> Tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels.

    The size is that of the stored pixels; a warning is logged when the file carries an EXIF
    orientation that swaps the axes, since ``load_image`` applies it and the boxes would then
    refer to a transposed frame.
    """
    check_image_file(Path(path), what=what)
    try:
        with Image.open(path) as img:
            size = (int(img.width), int(img.height))
            orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Image.DecompressionBombError as err:
        raise InputTooLargeError(f"{what} is too large ({err}): {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InvalidInputError(f"{what} is not a readable image ({err}): {path}") from err
    if orientation in _TRANSPOSING_ORIENTATIONS:
        logger.warning("%s %s has EXIF orientation %d: annotations refer to the stored pixels, "
                       "but images are loaded rotated", what, path, orientation)
    return size


def check_boxes_in_image(boxes: np.ndarray, size: Tuple[int, int], *, where: str,
                         tolerance: float = 1.0) -> np.ndarray:
    """Clip ``[N, 4]`` pixel boxes to the image, raising if one exceeds it by > ``tolerance`` px."""
    w, h = size
    bad = ((boxes[:, 0] < -tolerance) | (boxes[:, 1] < -tolerance)
           | (boxes[:, 2] > w + tolerance) | (boxes[:, 3] > h + tolerance))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(f"{where}: box {boxes[i].tolist()} lies outside the {w}x{h} image")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise InvalidInputError(f"{where}: box {boxes[i].tolist()} has x2 < x1 or y2 < y1")
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out
