"""The on-disk catalog format: a JSON index, one safetensors file per class, the class images.

::

    CATALOG/
      catalog.json                 index (written atomically; see :class:`CatalogIndex`)
      features/<id>.safetensors    the tensors of one class (``features`` + extras), immutable
      images/<id>-<n>.<ext>        copies of the class images (to rebuild with another model)
      .lock                        writers hold an exclusive flock on it

File names use random ids, never class names, so any class name is safe. A class file is never
modified: a change writes new files, then replaces ``catalog.json``, then deletes the files no
longer referenced. A reader that loaded the previous index and finds a file gone re-reads the
index (:class:`CatalogStore` does it once).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write, atomic_write_text

FORMAT = "os2d-catalog"
FORMAT_VERSION = 1
INDEX_FILE = "catalog.json"
FEATURES_DIR = "features"
IMAGES_DIR = "images"
LOCK_FILE = ".lock"


class CatalogClass(BaseModel):
    """One class of the index."""

    model_config = ConfigDict(extra="forbid")
    name: str
    id: str
    features: str  # path relative to the catalog folder
    images: List[str]  # paths relative to the catalog folder
    entries: int = Field(ge=1)


class CatalogIndex(BaseModel):
    """``catalog.json``: format, the bank key (model identity + class-image settings), classes."""

    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    key: Dict[str, object]
    model: Dict[str, object] = Field(default_factory=dict)
    version: int = 0
    classes: List[CatalogClass] = Field(default_factory=list)

    def find(self, name: str) -> Optional[CatalogClass]:
        return next((c for c in self.classes if c.name == name), None)


def is_catalog(folder: Path) -> bool:
    return (Path(folder) / INDEX_FILE).is_file()


def read_index(folder: Path) -> CatalogIndex:
    """Parse ``folder/catalog.json``; clear errors for a missing, foreign or corrupt index."""
    path = Path(folder) / INDEX_FILE
    if not Path(folder).exists():
        raise InputNotFoundError(f"catalog folder not found: {folder}")
    if not path.is_file():
        raise InvalidInputError(f"{folder} is not an os2d catalog (no {INDEX_FILE})")
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"catalog index {path} is not valid JSON ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not an os2d catalog index (missing \"format\": \"{FORMAT}\")")
    if blob.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(f"{path} has catalog format version {blob.get('format_version')!r}; "
                                f"this os2d reads version {FORMAT_VERSION}")
    try:
        return CatalogIndex.model_validate(blob)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"catalog index {path} is malformed at {where}: {first['msg']}") from err


def write_index(folder: Path, index: CatalogIndex) -> None:
    atomic_write_text(Path(folder) / INDEX_FILE, index.model_dump_json(indent=1) + "\n")


@contextlib.contextmanager
def write_lock(folder: Path) -> Iterator[None]:
    """Exclusive inter-process lock of the catalog's writers (readers never wait)."""
    with open(Path(folder) / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def new_id() -> str:
    return uuid.uuid4().hex


def write_class_file(folder: Path, class_id: str, name: str, state: Dict[str, torch.Tensor]) -> str:
    """Write the tensors of one class; returns its path relative to ``folder``."""
    rel = f"{FEATURES_DIR}/{class_id}.safetensors"
    path = Path(folder) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"name": name}))
    return rel


def read_class_file(folder: Path, rel: str) -> Dict[str, torch.Tensor]:
    path = Path(folder) / rel
    if not path.is_file():
        raise FileNotFoundError(str(path))  # a concurrent writer removed it: callers re-read the index
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise InvalidInputError(f"catalog features file {path} is corrupt or truncated ({err})") from err


def write_image_bytes(folder: Path, class_id: str, number: int, data: bytes, suffix: str) -> str:
    rel = f"{IMAGES_DIR}/{class_id}-{number}{suffix}"
    path = Path(folder) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return rel


def remove_files(folder: Path, rels: Sequence[str]) -> None:
    for rel in rels:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(Path(folder) / rel)


class CatalogStore:
    """Entry features read from class files on demand (memory: the entries asked for).

    Args:
        folder: the catalog folder.
        rows: for each entry, ``(class file, row in that file)``.
    """

    def __init__(self, folder: Path, rows: Sequence[Tuple[str, int]]) -> None:
        self.folder = Path(folder)
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, index: torch.Tensor) -> torch.Tensor:
        wanted = [self.rows[i] for i in index.tolist()]
        files: Dict[str, torch.Tensor] = {}
        for rel, _ in wanted:
            if rel not in files:
                try:
                    files[rel] = read_class_file(self.folder, rel)["features"]
                except FileNotFoundError as err:
                    raise InvalidInputError(
                        f"catalog {self.folder} changed while it was read (class file {rel} was removed); "
                        f"reload the catalog") from err
        if not wanted:
            return torch.zeros(0)
        return torch.stack([files[rel][row] for rel, row in wanted])
