"""A product catalog on disk: class features computed once, with the model's identity.

>>> det = Detector.load("default")
>>> cat = Catalog.create("shelf-catalog", det)
>>> cat.add({"cereal": ["cereal_front.jpg"], "milk": ["milk.png"]}, detector=det)
>>> det.detect("shelf.jpg", cat.bank())

A catalog built with another model (or other class-image settings) is refused by
:meth:`Catalog.open` with :class:`CatalogMismatchError`, unless ``rebuild=True`` recomputes every
class from the stored class images. Several processes may read a catalog while one writes it
(see :mod:`os2d.catalog.store`).
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open

from os2d.catalog import store
from os2d.data.images import load_image
from os2d.errors import InputNotFoundError, InvalidInputError, InvalidTypeError
from os2d.inference.bank import BankKey, ClassBank

logger = logging.getLogger(__name__)

#: What :meth:`Catalog.add` accepts as a class image: a path, encoded image bytes, PIL or array.
ImageSource = Union[str, Path, bytes, Image.Image, np.ndarray]
Progress = Callable[[int, int], None]
_FORMAT_SUFFIX = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif", "gif": ".gif"}
_KEEP_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


class CatalogMismatchError(InvalidInputError):
    """The catalog was built with another model or other class-image settings."""


#: Class-image settings of a catalog's key and the command-line options that set them.
_SETTING_FLAGS = {"class_size": "--class-size", "interpolation": "--interpolation", "augment": "--augment",
                  "trim": "--trim/--no-trim"}


def _mismatch(catalog: "Catalog", detector) -> str:
    """Why a catalog does not fit a detector, and what to do about it."""
    built, wanted = catalog.key, detector.bank_key
    diffs = []
    if built.model_identity != wanted.model_identity:
        desc = catalog.index.model.get("description") or "?"
        diffs.append(f"it was built with model {built.model_identity} ({desc}), this model is "
                     f"{wanted.model_identity} ({detector.config.description or '?'})")
    for name, flag in _SETTING_FLAGS.items():
        if getattr(built, name) != getattr(wanted, name):
            diffs.append(f"its {name} is {getattr(built, name)!r}, the detector's is {getattr(wanted, name)!r} "
                         f"(os2d {flag})")
    return (f"catalog {catalog.folder} does not fit this detector: " + "; ".join(diffs)
            + f". Recompute it with 'os2d catalog rebuild {catalog.folder} --model MODEL' (or --rebuild)")


def _encode(source: ImageSource, *, what: str) -> Tuple[bytes, str]:
    """(bytes to store, file suffix) of a class image, validated by decoding it."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        load_image(path, what=what)  # clear errors for missing/corrupt/huge files
        suffix = path.suffix.lower()
        return path.read_bytes(), suffix if suffix in _KEEP_SUFFIXES else ".img"
    if isinstance(source, (bytes, bytearray)):
        with tempfile.TemporaryDirectory(prefix="os2d-upload-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(bytes(source))
            load_image(path, what=what)  # the same checks as files (size limits, corrupt data)
            with Image.open(path) as probe:
                fmt = (probe.format or "").lower()
        return bytes(source), _FORMAT_SUFFIX.get(fmt, ".img")
    if isinstance(source, (Image.Image, np.ndarray)):
        buffer = io.BytesIO()
        load_image(source, what=what).save(buffer, format="PNG")
        return buffer.getvalue(), ".png"
    raise InvalidTypeError(f"{what}: expected a path, image bytes, PIL image or numpy array, "
                           f"got {type(source).__name__}")


def _class_extras(folder: Path, entry: store.CatalogClass) -> Dict[str, torch.Tensor]:
    """The tensors of a class file other than ``features`` (checking the file holds ``entries`` rows)."""
    path = folder / entry.features
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            if "features" not in keys:
                raise InvalidInputError(f"catalog features file {path} (class {entry.name!r}) has no 'features' tensor")
            rows = handle.get_slice("features").get_shape()[0]
            extras = {key: handle.get_tensor(key) for key in keys if key != "features"}
    except FileNotFoundError as err:
        raise InvalidInputError(f"catalog {folder} is being changed or is damaged: {entry.features} "
                                f"(class {entry.name!r}) is missing; reload it") from err
    except (SafetensorError, OSError) as err:
        raise InvalidInputError(f"catalog features file {path} (class {entry.name!r}) is corrupt or truncated "
                                f"({err}); remove the class and add it again, or run 'os2d catalog rebuild'") from err
    bad = [k for k, v in extras.items() if v.shape[0] != rows]
    if rows != entry.entries or bad:
        raise InvalidInputError(f"catalog features file {path} (class {entry.name!r}) does not match the index "
                                f"({rows} rows, the index says {entry.entries}); run 'os2d catalog rebuild'")
    return extras


@contextlib.contextmanager
def _removed_on_error(folder: Path) -> Iterator[List[str]]:
    """A list to record new files in; they are removed if the block fails (the index never named them)."""
    written: List[str] = []
    try:
        yield written
    except BaseException:
        store.remove_files(folder, written)
        raise


class Catalog:
    """A catalog folder (see :mod:`os2d.catalog.store` for the layout). Use :meth:`create` or :meth:`open`."""

    def __init__(self, folder: Path, index: store.CatalogIndex) -> None:
        self.folder = Path(folder)
        self.index = index

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, folder: Union[str, Path], detector) -> "Catalog":
        """A new, empty catalog stamped with ``detector``'s model identity and class settings.

        ``folder`` must not exist or be an empty folder (nothing of the user's is overwritten).
        """
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            what = "an os2d catalog" if store.is_catalog(folder) else "not empty"
            raise InvalidInputError(f"catalog folder {folder} already exists and is {what}; "
                                    f"choose a new folder (or use 'os2d catalog add')")
        folder.mkdir(parents=True, exist_ok=True)
        index = store.CatalogIndex(key=detector.bank_key.to_dict(), model=detector.model_summary())
        store.write_index(folder, index)
        return cls(folder, index)

    @classmethod
    def open(cls, folder: Union[str, Path], detector=None, *, rebuild: bool = False,
             progress: Optional[Progress] = None) -> "Catalog":
        """Open a catalog; with ``detector``, check it was built for that detector.

        Raises:
            CatalogMismatchError: built with another model/class settings (unless ``rebuild``,
                which recomputes every class from its stored images with ``detector``).
        """
        catalog = cls(Path(folder), store.read_index(Path(folder)))
        if detector is None:
            return catalog
        if catalog.key != detector.bank_key:
            if not rebuild:
                raise CatalogMismatchError(_mismatch(catalog, detector))
            catalog._rebuild(detector, progress=progress)
        return catalog

    def reload(self) -> bool:
        """Re-read the index; True when it changed since it was last read."""
        fresh = store.read_index(self.folder)
        changed = fresh.version != self.index.version
        self.index = fresh
        return changed

    # ------------------------------------------------------------------ reading
    @property
    def key(self) -> BankKey:
        return BankKey.from_dict(self.index.key)

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.index.classes]

    @property
    def version(self) -> int:
        return self.index.version

    def __len__(self) -> int:
        return len(self.index.classes)

    def __contains__(self, name: str) -> bool:
        return self.index.find(name) is not None

    def image_paths(self, name: str) -> List[Path]:
        entry = self._entry(name)
        return [self.folder / rel for rel in entry.images]

    def bank(self, names: Optional[Sequence[str]] = None) -> ClassBank:
        """The classes ``names`` (default: all) as a bank whose features are read on demand."""
        if len(self) == 0:
            raise InvalidInputError(f"catalog {self.folder} has no classes")
        entries = [self._entry(n) for n in names] if names is not None else list(self.index.classes)
        rows, labels, extras = [], [], {}
        for label, entry in enumerate(entries):
            for key, tensor in _class_extras(self.folder, entry).items():
                extras.setdefault(key, []).append(tensor)
            rows.extend((entry.features, r) for r in range(entry.entries))
            labels.extend([label] * entry.entries)
        return ClassBank(names=[e.name for e in entries], entry_labels=torch.tensor(labels, dtype=torch.int64),
                         store=store.CatalogStore(self.folder, rows), key=self.key,
                         extras={k: torch.cat(v) for k, v in extras.items()})

    def _entry(self, name: str) -> store.CatalogClass:
        entry = self.index.find(name)
        if entry is None:
            raise InvalidInputError(f"class {name!r} is not in catalog {self.folder}")
        return entry

    # ------------------------------------------------------------------ writing
    def add(self, classes: Mapping[str, Sequence[ImageSource]], *, detector,
            progress: Optional[Progress] = None) -> List[str]:
        """Add classes (a name already present is extended with the new images). Returns the names."""
        self.key.check(detector.bank_key, what=f"catalog {self.folder}")
        encoded = {str(name): [_encode(img, what=f"class image for {name!r}") for img in images]
                   for name, images in classes.items()}
        for name, images in encoded.items():
            if not name.strip():
                raise InvalidInputError(f"class names must not be empty, got {name!r}")
            if not images:
                raise InvalidInputError(f"class {name!r} has no images")
        with store.write_lock(self.folder), _removed_on_error(self.folder) as written:
            index = store.read_index(self.folder)
            doomed: List[str] = []
            for i, (name, images) in enumerate(encoded.items()):
                old = index.find(name)
                entry = self._write_class(name, images, old=old, detector=detector, written=written)
                if old is not None:
                    doomed.extend([old.features])
                    index.classes[index.classes.index(old)] = entry
                else:
                    index.classes.append(entry)
                if progress is not None:
                    progress(i + 1, len(encoded))
            index.version += 1
            store.write_index(self.folder, index)
            written.clear()  # named by the index now
            store.remove_files(self.folder, doomed)
            self.index = index
        return list(encoded)

    def _write_class(self, name: str, images: List[Tuple[bytes, str]], *, old: Optional[store.CatalogClass],
                     detector, written: List[str]) -> store.CatalogClass:
        """Write the images and features of one class (their paths are appended to ``written``)."""
        class_id = store.new_id()
        start = len(old.images) if old is not None else 0
        rels = []
        for n, (data, suffix) in enumerate(images):
            rels.append(store.write_image_bytes(self.folder, class_id, start + n, data, suffix))
            written.append(rels[-1])
        state = detector.prepare_classes({name: [self.folder / r for r in rels]}).class_state(name)
        if old is not None:  # extend: keep the stored entries, append the new ones
            try:
                previous = store.read_class_file(self.folder, old.features)
            except FileNotFoundError as err:
                raise InvalidInputError(f"catalog {self.folder} is damaged: the features of class {name!r} "
                                        f"({old.features}) are missing; run 'os2d catalog rebuild'") from err
            state = {k: torch.cat([previous[k], v]) for k, v in state.items()}
            rels = list(old.images) + rels
        features = store.write_class_file(self.folder, class_id, name, state)
        written.append(features)
        return store.CatalogClass(name=name, id=class_id, features=features, images=rels,
                                  entries=int(state["features"].shape[0]))

    def remove(self, names: Sequence[str]) -> None:
        """Remove classes (their features and stored images); unknown names are an error."""
        with store.write_lock(self.folder):
            index = store.read_index(self.folder)
            missing = [n for n in names if index.find(n) is None]
            if missing:
                raise InvalidInputError(f"classes {missing} are not in catalog {self.folder}")
            gone = [index.find(n) for n in names]
            index.classes = [c for c in index.classes if c.name not in set(names)]
            index.version += 1
            store.write_index(self.folder, index)
            store.remove_files(self.folder, [f for c in gone for f in [c.features, *c.images]])
            self.index = index

    def rebuild(self, detector, *, progress: Optional[Progress] = None) -> None:
        """Recompute every class with ``detector`` from its stored images (whatever the catalog's model)."""
        self._rebuild(detector, progress=progress)

    def _rebuild(self, detector, *, progress: Optional[Progress] = None) -> None:
        """Recompute every class with ``detector`` from the stored images; restamp the catalog."""
        with store.write_lock(self.folder), _removed_on_error(self.folder) as written:
            index = store.read_index(self.folder)
            doomed, fresh = [], []
            for i, entry in enumerate(index.classes):
                paths = [self.folder / rel for rel in entry.images]
                missing = [str(p) for p in paths if not p.is_file()]
                if missing:
                    raise InputNotFoundError(f"cannot rebuild catalog {self.folder}: class images of "
                                             f"{entry.name!r} are missing: {missing[:3]}")
                state = detector.prepare_classes({entry.name: paths}).class_state(entry.name)
                class_id = store.new_id()
                rel = store.write_class_file(self.folder, class_id, entry.name, state)
                written.append(rel)
                fresh.append(entry.model_copy(update={"id": class_id, "features": rel,
                                                      "entries": int(state["features"].shape[0])}))
                doomed.append(entry.features)
                if progress is not None:
                    progress(i + 1, len(index.classes))
            index.classes = fresh
            index.key = detector.bank_key.to_dict()
            index.model = detector.model_summary()
            index.version += 1
            store.write_index(self.folder, index)
            written.clear()  # named by the index now
            store.remove_files(self.folder, doomed)
            self.index = index
        logger.info("rebuilt catalog %s for %s", self.folder, index.key["model_identity"])


def catalog_summary(catalog: Catalog) -> Dict[str, object]:
    """JSON-ready description: folder, model, settings, class count and names."""
    return {"folder": str(catalog.folder), "model": catalog.index.model, "key": catalog.index.key,
            "version": catalog.version, "classes": len(catalog), "names": catalog.names}
