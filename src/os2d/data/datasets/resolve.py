"""Open a dataset from a command-line style spec: a folder, a CSV, a COCO JSON or a paper name."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from os2d.data.datasets.base import Dataset
from os2d.data.datasets.coco import read_coco
from os2d.data.datasets.os2d_csv import read_os2d_csv
from os2d.data.datasets.paper import (
    apply_paper_split,
    family_of_csv,
    paper_dataset,
    paper_dataset_names,
    parse_paper_name,
    read_family_csv,
)
from os2d.errors import InputNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)


def _find_in_folder(folder: Path) -> Path:
    """The annotation file of a dataset folder: ``classes/*.csv``, else a single ``*.json``."""
    csvs = sorted((folder / "classes").glob("*.csv")) if (folder / "classes").is_dir() else []
    if len(csvs) == 1:
        return csvs[0]
    if len(csvs) > 1:
        named = [p for p in csvs if p.stem == folder.name]
        if len(named) == 1:
            return named[0]
        raise InvalidInputError(f"dataset folder {folder} has several annotation CSVs {[p.name for p in csvs]}; "
                         f"pass the CSV file itself")
    jsons = sorted(folder.glob("*.json"))
    if len(jsons) == 1:
        return jsons[0]
    raise InvalidInputError(f"dataset folder {folder} holds neither classes/<name>.csv nor a single COCO "
                     f"*.json (found {[p.name for p in jsons]})")


def open_annotation_file(path: Path, *, image_root: Optional[Path] = None,
                         cache_dir: Optional[Path] = None) -> Dataset:
    """Read an OS2D CSV or a COCO JSON, by extension (paper CSVs get their scene folder)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        family = family_of_csv(path)
        if family is not None:
            return read_family_csv(path, family, image_root=image_root)
        return read_os2d_csv(path, image_root=image_root)
    if suffix == ".json":
        return read_coco(path, image_root=image_root, cache_dir=cache_dir)
    raise InvalidInputError(f"unsupported annotation file {path} (expected .csv or .json)")


def apply_split(dataset: Dataset, split: str, *, family: Optional[str] = None) -> Dataset:
    """The paper subset semantics for paper datasets, else :meth:`Dataset.filter_split`."""
    if family is not None:
        return apply_paper_split(dataset, family, split)
    return dataset.filter_split(split)


def resolve_dataset(spec: str, *, data_root: Optional[Path] = None, split: Optional[str] = None,
                    image_root: Optional[Path] = None, cache_dir: Optional[Path] = None) -> Dataset:
    """Open a dataset and apply ``split``.

    ``spec`` is a dataset folder (``<root>/classes/<name>.csv`` layout or a folder with one COCO
    JSON), an annotation file (``.csv`` / ``.json``), a paper dataset name such as
    ``grozi-val-new-cl`` (needs ``data_root``), or the name of a folder under ``data_root``.
    """
    path = Path(spec).expanduser()
    if path.exists():
        annotation = _find_in_folder(path) if path.is_dir() else path
        dataset = open_annotation_file(annotation, image_root=image_root, cache_dir=cache_dir)
        family = family_of_csv(annotation)
        return dataset if split is None else apply_split(dataset, split, family=family)
    parsed = parse_paper_name(spec)
    if parsed is not None:
        if data_root is None:
            raise InvalidInputError(f"dataset {spec!r} is a paper dataset name: pass data_root (the folder "
                             f"holding grozi/, dairy/, paste/, instre/)")
        if split is not None and parsed[1] is not None and split != parsed[1]:
            raise InvalidInputError(f"dataset {spec!r} already selects split {parsed[1]!r}; got split={split!r}")
        dataset = paper_dataset(spec, data_root=Path(data_root), image_root=image_root, cache_dir=cache_dir)
        return apply_paper_split(dataset, parsed[0], split) if split and parsed[1] is None else dataset
    if data_root is not None and (Path(data_root) / spec).is_dir():
        return resolve_dataset(str(Path(data_root) / spec), split=split, image_root=image_root,
                               cache_dir=cache_dir)
    where = f" or under data_root={data_root}" if data_root is not None else ""
    raise InputNotFoundError(f"dataset {spec!r} not found: not a file or folder{where}, and not one of "
                            f"the paper datasets {list(paper_dataset_names())}")
