"""The service's product catalog: an os2d catalog folder plus a SQLite mirror with metadata.

Write protocol (several worker processes, each with threads):

1. class features are computed outside any lock;
2. under the catalog's write lock (:func:`os2d.catalog.store.write_lock`) and one SQLite
   ``BEGIN IMMEDIATE`` transaction: new immutable files are written (random ids), the database
   rows and version are updated, then ``catalog.json`` is replaced atomically, then COMMIT;
3. files no longer referenced go to the ``trash`` table and are deleted after a grace period,
   so that detections that started with the previous version can still read them.

``catalog.json`` is the authority: whenever its version differs from the database's (a crash
between the two writes, or ``os2d catalog add`` on the folder), the database is re-synced from
it. Readers never lock: each request reads the version (one SQLite query) and rebuilds its class
bank only when it changed, from immutable per-class files cached by id.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from PIL import Image
from safetensors import safe_open

from os2d.catalog import Catalog, store
from os2d.errors import InvalidInputError
from os2d.inference.bank import BankKey, ClassBank
from os2d.serve import db
from os2d.serve.errors import CatalogFullError, EmptyCatalogError, UnavailableError, UnknownClassError
from os2d.serve.uploads import DecodedImage, check_class_name

logger = logging.getLogger(__name__)

_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif",
           "TIFF": ".tif"}
EMPTY_MESSAGE = "catalog has no classes; add some with POST /classes"


class CatalogChangedError(UnavailableError):
    """A class file vanished while it was read (changed by another program): retry (503)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=1)


class _ClassFileStore:
    """The entry features of one immutable class file, read on demand (``Tensor[k, C, g, g]``)."""

    def __init__(self, folder: Path, rel: str, entries: int) -> None:
        self.folder, self.rel, self.entries = folder, rel, entries

    def __len__(self) -> int:
        return self.entries

    def get(self, index: torch.Tensor) -> torch.Tensor:
        try:
            features = store.read_class_file(self.folder, self.rel)["features"]  # [K, C, g, g]
        except FileNotFoundError:
            raise CatalogChangedError(f"catalog class file {self.rel} was removed while it was read") from None
        if features.shape[0] != self.entries:
            raise InvalidInputError(f"catalog class file {self.rel} holds {features.shape[0]} entries, "
                                    f"the index says {self.entries}")
        return features.index_select(0, index)


def prepare_catalog(folder: Path, detector, *, rebuild: bool = False) -> None:
    """Create or open the catalog folder for ``detector``, sync the database, collect orphan files.

    Raises:
        CatalogMismatchError: the folder was built with another model (unless ``rebuild``).
        InvalidInputError: the folder exists and is neither empty nor an os2d catalog.
    """
    folder = Path(folder)
    if not store.is_catalog(folder):
        Catalog.create(folder, detector)
    Catalog.open(folder, detector, rebuild=rebuild)
    db.initialise(folder)
    with store.write_lock(folder), db.opened(folder) as conn, db.transaction(conn):
        index = store.read_index(folder)
        _sync(conn, folder, index)
        _collect_orphans(conn, folder, index)


def _image_row(folder: Path, rel: str) -> db.ImageRow:
    path = folder / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return db.ImageRow(path=rel)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, SyntaxError):
        width = height = None
    return db.ImageRow(path=rel, bytes=len(data), width=width, height=height,
                       sha256=hashlib.sha256(data).hexdigest())


def _sync(conn, folder: Path, index: store.CatalogIndex) -> None:
    """Make the database mirror ``index`` (a no-op when the versions agree)."""
    if db.read_version(conn) == index.version:
        return
    rows = {row.name: row for row in db.read_classes(conn)}
    for entry in index.classes:
        row = rows.pop(entry.name, None)
        if row is not None and row.id == entry.id:
            continue
        db.upsert_class(conn, name=entry.name, class_id=entry.id, features=entry.features, entries=entry.entries,
                        images=[_image_row(folder, rel) for rel in entry.images])
    for name in rows:
        db.delete_class(conn, name)
    db.set_version(conn, index.version)
    logger.info("catalog %s: database synced to version %d (%d classes)", folder, index.version, len(index.classes))


def _collect_orphans(conn, folder: Path, index: store.CatalogIndex) -> None:
    """Put files that no class references (left by crashed writers) in the trash."""
    referenced = {rel for c in index.classes for rel in (c.features, *c.images)}
    on_disk = {f"{sub}/{p.name}" for sub in (store.FEATURES_DIR, store.IMAGES_DIR)
               if (folder / sub).is_dir() for p in (folder / sub).iterdir() if p.is_file()}
    orphans = sorted(on_disk - referenced - set(db.trashed(conn)))
    if orphans:
        logger.info("catalog %s: %d unreferenced files go to the trash", folder, len(orphans))
    db.trash(conn, orphans)


class ServiceCatalog:
    """One worker's view of the catalog folder (thread-safe).

    Args:
        folder: a folder prepared by :func:`prepare_catalog`.
        key: the bank key of the worker's detector (checked against the catalog's).
        trash_grace_s: how long unreferenced files are kept before deletion.
        max_classes: classes the catalog may hold.
    """

    def __init__(self, folder: Path, key: BankKey, *, trash_grace_s: float = 600.0,
                 max_classes: int = 10_000) -> None:
        self.folder = Path(folder)
        index = store.read_index(self.folder)
        key.check(BankKey.from_dict(index.key), what=f"catalog {self.folder}")
        self.key, self.trash_grace_s, self.max_classes = key, trash_grace_s, max_classes
        self._lock = threading.Lock()
        self._version: Optional[int] = None
        self._pieces: Dict[str, ClassBank] = {}
        self._full: Optional[ClassBank] = None

    # ------------------------------------------------------------------ reading
    def version(self) -> int:
        with db.opened(self.folder) as conn:
            return db.read_version(conn)

    def classes(self) -> List[db.ClassRow]:
        with db.opened(self.folder) as conn:
            return db.read_classes(conn)

    def count(self) -> int:
        with db.opened(self.folder) as conn:
            return db.count_classes(conn)

    def images(self, name: str) -> List[db.ImageRow]:
        with db.opened(self.folder) as conn:
            return db.read_images(conn, name)

    def bank(self, names: Optional[Sequence[str]] = None) -> ClassBank:
        """The classes ``names`` (default: all) of the current version; features read on demand.

        Raises:
            EmptyCatalogError: the catalog has no classes.
            UnknownClassError: a name is not in the catalog (the message names it).
        """
        full = self._current()
        if full is None:
            raise EmptyCatalogError(EMPTY_MESSAGE)
        if names is None:
            return full
        unknown = [n for n in names if n not in set(full.names)]
        if unknown:
            raise UnknownClassError(f"unknown classes {unknown}; GET /classes lists the catalog")
        return full.select(list(names))

    def refresh(self) -> None:
        """Re-sync from ``catalog.json`` and forget the cached bank (after a file vanished)."""
        with store.write_lock(self.folder), db.opened(self.folder) as conn, db.transaction(conn):
            _sync(conn, self.folder, store.read_index(self.folder))
        with self._lock:
            self._version, self._full = None, None

    def _current(self) -> Optional[ClassBank]:
        with db.opened(self.folder) as conn, db.transaction(conn, write=False):
            version = db.read_version(conn)
            if version == self._version:
                return self._full
            rows = db.read_classes(conn)
        with self._lock:
            if version != self._version:
                pieces = {row.id: self._pieces.get(row.id) or self._piece(row) for row in rows}
                self._pieces = pieces
                self._full = ClassBank.concat([pieces[row.id] for row in rows]) if rows else None
                self._version = version
            return self._full

    def _piece(self, row: db.ClassRow) -> ClassBank:
        extras = {}
        try:
            with safe_open(str(self.folder / row.features), framework="pt") as handle:
                for name in handle.keys():
                    if name != "features":
                        extras[name] = handle.get_tensor(name)
        except FileNotFoundError:
            raise CatalogChangedError(f"catalog class file {row.features} of {row.name!r} is missing") from None
        return ClassBank(names=[row.name], entry_labels=torch.zeros(row.entries, dtype=torch.int64),
                         store=_ClassFileStore(self.folder, row.features, row.entries), key=self.key, extras=extras)

    # ------------------------------------------------------------------ writing
    def add(self, name: str, images: Sequence[DecodedImage], *, detector,
            before_write: Optional[Callable[[], None]] = None) -> db.ClassRow:
        """Add class ``name`` (or extend it) with ``images``; returns its row.

        ``before_write`` is called once the features are computed, before anything is written
        (it may raise to give up, e.g. when the request timed out).
        """
        check_class_name(name)
        if not images:
            raise InvalidInputError(f"class {name!r}: no images given")
        state = detector.prepare_classes({name: [im.image for im in images]}).class_state(name)
        if before_write is not None:
            before_write()
        with store.write_lock(self.folder), db.opened(self.folder) as conn, db.transaction(conn):
            index = store.read_index(self.folder)
            _sync(conn, self.folder, index)
            old = index.find(name)
            if old is None and len(index.classes) >= self.max_classes:
                raise CatalogFullError(f"the catalog holds {len(index.classes)} classes, the limit "
                                       f"(--max-classes); delete some first")
            entry, new_rows = self._write_files(name, images, state, old)
            if old is None:
                index.classes.append(entry)
            else:
                index.classes[index.classes.index(old)] = entry
                db.trash(conn, [old.features])
            prior = db.read_images(conn, name) if old is not None else []
            db.upsert_class(conn, name=name, class_id=entry.id, features=entry.features, entries=entry.entries,
                            images=prior + new_rows)
            self._commit_index(conn, index)
            return db.find_class(conn, name)

    def _write_files(self, name: str, images: Sequence[DecodedImage], state: Dict[str, torch.Tensor],
                     old: Optional[store.CatalogClass]):
        class_id = store.new_id()
        start = len(old.images) if old is not None else 0
        rels, rows = [], []
        for n, im in enumerate(images):
            rel = store.write_image_bytes(self.folder, class_id, start + n, im.data, _SUFFIX.get(im.format, ".img"))
            rels.append(rel)
            rows.append(db.ImageRow(path=rel, bytes=len(im.data), width=im.size[0], height=im.size[1],
                                    sha256=hashlib.sha256(im.data).hexdigest()))
        if old is not None:  # extend: the stored entries first, then the new ones
            previous = store.read_class_file(self.folder, old.features)
            state = {k: torch.cat([previous[k], v]) for k, v in state.items()}
            rels = list(old.images) + rels
        features = store.write_class_file(self.folder, class_id, name, state)
        entry = store.CatalogClass(name=name, id=class_id, features=features, images=rels,
                                   entries=int(state["features"].shape[0]))
        return entry, rows

    def remove(self, name: str) -> None:
        """Delete class ``name``; its files are deleted after the grace period."""
        with store.write_lock(self.folder), db.opened(self.folder) as conn, db.transaction(conn):
            index = store.read_index(self.folder)
            _sync(conn, self.folder, index)
            old = index.find(name)
            if old is None:
                raise UnknownClassError(f"class {name!r} is not in the catalog")
            index.classes.remove(old)
            db.delete_class(conn, name)
            db.trash(conn, [old.features, *old.images])
            self._commit_index(conn, index)

    def _commit_index(self, conn, index: store.CatalogIndex) -> None:
        """Bump the version in the database, empty expired trash, then replace ``catalog.json``."""
        index.version += 1
        db.set_version(conn, index.version)
        expired = db.expired_trash(conn, older_than=time.time() - self.trash_grace_s)
        store.remove_files(self.folder, expired)
        db.untrash(conn, expired)
        store.write_index(self.folder, index)  # last: the transaction commits right after
