"""Similar classes of a training dataset: the hard negatives of the class batch.

A dataset folder in the OS2D CSV layout may hold ``classes/similar_classes.json`` (next to
``classes/images/``)::

    {"format": "os2d-similar-classes", "version": 1,
     "similar": {"Pringles-127406": ["Pringles-127407", "Pringles-198520", ...], ...},
     "how": "same brand first, then nearest by global descriptor"}

``similar[c]`` lists the other classes most easily confused with ``c``, most similar first. The
:class:`~os2d.train.batching.BatchSampler` puts the first of them into the class batch as negatives
of each positive class (see its ``hard_negatives`` argument). :func:`rank_similar_classes` builds
the lists from class groups (e.g. brands: variants of one brand first) and global descriptors
(cosine similarity).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write_text

SIMILAR_CLASSES_FILE = "similar_classes.json"
FORMAT = "os2d-similar-classes"
VERSION = 1


def rank_similar_classes(names: Sequence[str], descriptors: np.ndarray, *,
                         groups: Optional[Mapping[str, str]] = None, top: int = 5) -> Dict[str, List[str]]:
    """For each class the ``top`` most similar other classes.

    Args:
        names: N class names.
        descriptors: ``[N, D]`` global descriptors (any scale; cosine similarity is used).
        groups: class -> group (e.g. brand); classes of the same group come first.
        top: list length per class.

    Within the same group and among the rest, classes are ordered by decreasing cosine similarity
    (ties: by name).
    """
    names = list(names)
    desc = np.asarray(descriptors, dtype=np.float64)
    if desc.ndim != 2 or desc.shape[0] != len(names):
        raise InvalidInputError(f"descriptors must be [N, D] with N = {len(names)} classes, got {desc.shape}")
    if len(set(names)) != len(names):
        raise InvalidInputError("class names must be unique")
    if top < 1:
        raise InvalidInputError(f"top must be >= 1, got {top}")
    unit = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T  # [N, N]
    groups = dict(groups or {})
    out: Dict[str, List[str]] = {}
    for i, name in enumerate(names):
        group = groups.get(name)
        keys = [(not (group is not None and groups.get(other) == group), -float(sim[i, j]), other)
                for j, other in enumerate(names) if j != i]
        out[name] = [key[2] for key in sorted(keys)[:top]]
    return out


def write_similar_classes(path: Path, similar: Mapping[str, Sequence[str]], *, how: str = "") -> Path:
    """Write ``similar`` to ``path`` (atomic)."""
    blob = {"format": FORMAT, "version": VERSION, "how": how,
            "similar": {k: list(v) for k, v in sorted(similar.items())}}
    atomic_write_text(Path(path), json.dumps(blob, indent=1) + "\n")
    return Path(path)


def read_similar_classes(path: Path) -> Dict[str, List[str]]:
    """The ``similar`` mapping of a file written by :func:`write_similar_classes`."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"similar-classes file not found: {path}")
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"{path} is not a similar-classes JSON file ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("similar"), dict):
        raise InvalidInputError(f"{path} is not a similar-classes file (format {FORMAT!r})")
    similar = blob["similar"]
    for name, others in similar.items():
        if not isinstance(others, list) or not all(isinstance(o, str) for o in others):
            raise InvalidInputError(f"{path}: similar[{name!r}] must be a list of class names, got {others!r}")
    return {str(k): list(v) for k, v in similar.items()}


def similar_classes_path(class_images: Mapping[str, Sequence[Path]]) -> Optional[Path]:
    """Where a dataset's file would be: ``similar_classes.json`` in the parent of the folder
    holding its (first) class image, i.e. ``classes/`` of an OS2D CSV folder (None: no classes)."""
    for files in class_images.values():
        if files:
            return Path(files[0]).parent.parent / SIMILAR_CLASSES_FILE
    return None


def find_similar_classes(class_images: Mapping[str, Sequence[Path]]) -> Dict[str, List[str]]:
    """The similar classes of a dataset (``{}`` when it has no file), restricted to its classes."""
    path = similar_classes_path(class_images)
    if path is None or not path.is_file():
        return {}
    known = set(class_images)
    return {name: [o for o in others if o in known and o != name]
            for name, others in read_similar_classes(path).items() if name in known}
