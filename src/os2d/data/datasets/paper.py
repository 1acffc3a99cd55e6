"""The OS2D paper's datasets, read from their published folders with the reference subsets.

Layout under ``data_root`` (as produced by the OS2D download instructions)::

    grozi/classes/grozi.csv, grozi/classes/images/, grozi/src/3264/     GroZi-3.2k
    dairy/classes/dairy.csv, dairy/classes/images/, dairy/src/original/
    paste/classes/paste.csv, paste/classes/images/, paste/src/original/  paste-v and paste-f
    instre/classes/instre.csv, instre/classes/images/, instre/INSTRE-S1/..., instre/INSTRE-S2/...

Names and subsets (identical to the reference ``os2d/data/dataset.py``):

* ``grozi-train`` (rows with split ``train``), ``grozi-train-mini`` (its first 2 images),
  ``grozi-val-old-cl`` / ``grozi-val-new-cl`` (boxes of that split, evaluated on *all*
  validation images, i.e. images of both val splits), ``grozi-val-all`` (both val splits);
* ``dairy``; ``paste-v`` (difficult flags as annotated); ``paste-f`` (the same CSV with every
  box non-difficult);
* ``instre-all``, ``instre-s{1,2}-{train,val,test}``: classes whose class image comes from
  INSTRE-S1 / INSTRE-S2, in class-id order; train = first 75 %, val = next 5 %, test = last 20 %
  of those classes; images are those with boxes of the chosen classes.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from os2d.data.datasets.base import Dataset, default_cache_dir
from os2d.data.datasets.instre import build_instre_csv
from os2d.data.datasets.os2d_csv import read_os2d_csv
from os2d.errors import InputNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaperLayout:
    """Where one published dataset keeps its CSV and scene images, relative to its folder."""

    folder: str
    csv_name: str
    scene_dir: str
    splits: Tuple[str, ...]


LAYOUTS = {
    "grozi": PaperLayout("grozi", "grozi.csv", "src/3264",
                         ("train", "train-mini", "val-old-cl", "val-new-cl", "val-all")),
    "dairy": PaperLayout("dairy", "dairy.csv", "src/original", ()),
    "paste": PaperLayout("paste", "paste.csv", "src/original", ("v", "f")),
    "instre": PaperLayout("instre", "instre.csv", ".",
                          ("all", "s1-train", "s1-val", "s1-test", "s2-train", "s2-val", "s2-test")),
}
GROZI_VAL_SPLITS = ("val-old-cl", "val-new-cl")


def paper_dataset_names() -> Tuple[str, ...]:
    """All recognised paper dataset names."""
    names = []
    for family, layout in LAYOUTS.items():
        names += [f"{family}-{s}" for s in layout.splits] if layout.splits else [family]
    return tuple(names)


def parse_paper_name(name: str) -> Optional[Tuple[str, Optional[str]]]:
    """``"grozi-val-new-cl"`` -> ``("grozi", "val-new-cl")``; ``None`` if not a paper name."""
    low = name.strip().lower()
    for family, layout in LAYOUTS.items():
        if low == family and not layout.splits:
            return family, None
        if low.startswith(family + "-") and low[len(family) + 1:] in layout.splits:
            return family, low[len(family) + 1:]
    return None


def family_of_csv(csv_path: Path) -> Optional[str]:
    """The paper dataset a CSV belongs to, judged by its file name (``grozi.csv`` -> ``grozi``)."""
    for family, layout in LAYOUTS.items():
        if csv_path.name.lower() == layout.csv_name:
            return family
    return None


def read_family_csv(csv_path: Path, family: str, *, image_root: Optional[Path] = None,
                    dataset_dir: Optional[Path] = None) -> Dataset:
    """Read a paper dataset's CSV with its scene folder (``src/3264`` for GroZi, ...).

    ``dataset_dir`` is the dataset folder (default: the CSV's grandparent); it differs when the
    CSV was generated into a cache (INSTRE).
    """
    layout = LAYOUTS[family]
    root = Path(dataset_dir) if dataset_dir is not None else csv_path.parent.parent
    if image_root is None:
        candidate = root / layout.scene_dir
        image_root = candidate if candidate.is_dir() else root / "src"
    return read_os2d_csv(csv_path, image_root=image_root, name=family)


def apply_paper_split(dataset: Dataset, family: str, split: str) -> Dataset:
    """The reference subset ``split`` of a paper dataset (see the module docstring)."""
    layout = LAYOUTS[family]
    if split not in layout.splits:
        raise InvalidInputError(f"unknown split {split!r} for {family}; available: {list(layout.splits)}")
    if family == "grozi":
        return _grozi_split(dataset, split)
    if family == "paste":
        return _without_difficult(dataset, name="paste-f") if split == "f" else _renamed(dataset, "paste-v")
    return _instre_split(dataset, split)


def _renamed(dataset: Dataset, name: str) -> Dataset:
    return replace(dataset, name=name)


def _grozi_split(dataset: Dataset, split: str) -> Dataset:
    if split in ("train", "train-mini"):
        out = dataset.filter_split("train")
        if split == "train-mini":
            out = out.subset(file_names=[r.file_name for r in out.images[:2]])
            present = {label for r in out.images for label in r.labels}
            out = out.subset(classes=[c for c in out.class_names if c in present])
    elif split == "val-all":
        out = dataset.filter_split(list(GROZI_VAL_SPLITS))
    else:
        out = dataset.filter_split(split, image_splits=list(GROZI_VAL_SPLITS))
    return _renamed(out, f"grozi-{split}")


def _without_difficult(dataset: Dataset, *, name: str) -> Dataset:
    images = [replace(r, difficult=np.zeros(len(r), dtype=bool)) for r in dataset.images]
    return replace(dataset, name=name, images=images)


def _instre_split(dataset: Dataset, split: str) -> Dataset:
    if split == "all":
        return _renamed(dataset, "instre-all")
    subset, part = split.split("-")
    tag = f"INSTRE-{subset.upper()}"
    classes = [c for c in dataset.class_names if any(tag in p.name for p in dataset.class_images[c])]
    n = len(classes)
    bounds = {"train": (0, n * 75 // 100), "val": (n * 75 // 100, n * 8 // 10), "test": (n * 8 // 10, n)}
    lo, hi = bounds[part]
    if hi <= lo:
        raise InvalidInputError(f"instre-{split} is empty: {n} {tag} classes in {dataset.name!r}")
    out = dataset.subset(classes=classes[lo:hi], drop_empty_images=True)
    return _renamed(out, f"instre-{split}")


def _instre_csv_from_mat(folder: Path, cache_dir: Optional[Path]) -> Optional[Path]:
    """``instre.csv`` built from ``gnd_instre.mat`` into the cache (reused when present)."""
    mat = folder / "gnd_instre.mat"
    if not mat.is_file():
        return None
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    out_dir = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / f"instre-{digest}"
    csv_path = out_dir / "instre.csv"
    if not csv_path.is_file():
        logger.info("building %s from %s", csv_path, mat)
        build_instre_csv(folder, out_dir=out_dir)
    return csv_path


def paper_dataset(name: str, *, data_root: Path, image_root: Optional[Path] = None,
                  cache_dir: Optional[Path] = None) -> Dataset:
    """Load a paper dataset by name (e.g. ``"grozi-val-new-cl"``) from ``data_root``.

    For INSTRE without ``instre/classes/instre.csv``, the CSV and class images are built from
    ``instre/gnd_instre.mat`` into ``cache_dir`` (see :mod:`os2d.data.datasets.instre`).
    """
    parsed = parse_paper_name(name)
    if parsed is None:
        raise InvalidInputError(f"unknown paper dataset {name!r}; known: {list(paper_dataset_names())}")
    family, split = parsed
    layout = LAYOUTS[family]
    folder = Path(data_root) / layout.folder
    csv_path = folder / "classes" / layout.csv_name
    if not csv_path.is_file() and family == "instre":
        csv_path = _instre_csv_from_mat(folder, cache_dir) or csv_path
    if not csv_path.is_file():
        raise InputNotFoundError(f"dataset {name!r}: annotation file not found: {csv_path} "
                                f"(expected the published layout under data_root={data_root})")
    dataset = read_family_csv(csv_path, family, image_root=image_root, dataset_dir=folder)
    return dataset if split is None else apply_paper_split(dataset, family, split)
