"""JSON lines results: one object per scene image, written and flushed as soon as it is known.

Line format (``docs/batch.md``)::

    {"image": "<path as given>", "width": W, "height": H, "seconds": t,
     "detections": [{"class": ..., "score": ..., "bbox": [x1, y1, x2, y2]}, ...]}
    {"image": "<path>", "error": "<one-line message>"}          # an image that could not be read

With ``resume``, the images already in the file with detections are skipped; error lines are
removed and their images tried again; a last line cut short by a killed run is removed. A file
that is not os2d JSON lines is refused. Nothing in the file changes before the first new line is
written (or :meth:`JsonlWriter.close`): a run that stops at an earlier check leaves it as it was.
Without ``resume`` or ``overwrite`` an existing file is refused; with ``overwrite`` it is
replaced when the first line is written.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write

logger = logging.getLogger(__name__)


def _parse_line(raw: bytes, *, path: Path, number: int) -> dict:
    """One complete line as a record (a JSON object with a string ``image``)."""
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{path}:{number} is not a JSON line ({err}); is it an os2d --jsonl file?") from None
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        raise InvalidInputError(f"{path}:{number} is not an os2d results line (a JSON object with \"image\")")
    return record


def _split(data: bytes, path: Path) -> Tuple[List[dict], bytes]:
    """(records of the complete lines, the bytes after the last newline)."""
    end = data.rfind(b"\n") + 1
    lines = data[:end].splitlines()
    return [_parse_line(raw, path=path, number=n) for n, raw in enumerate(lines, start=1) if raw.strip()], data[end:]


def read_jsonl(path: Union[str, Path]) -> List[dict]:
    """Every complete line of a results file (a truncated last line is ignored).

    Raises:
        InvalidInputError: a complete line that is not a JSON object with an ``image``.
    """
    path = Path(path)
    return _split(path.read_bytes(), path)[0]


class JsonlWriter:
    """Append results to ``path`` (see the module docstring).

    Args:
        path: the JSONL file.
        resume: keep the lines already there and report their images as done.
        overwrite: replace an existing file (without ``resume``).

    Attributes:
        previous: with ``resume``, the records kept from the file (error lines excluded).
        done: the ``image`` values of every record kept or written.
    """

    def __init__(self, path: Path, *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidInputError(f"--jsonl must be a file, got a folder: {self.path}")
        if not self.path.parent.is_dir():
            raise InputNotFoundError(f"output folder does not exist: {self.path.parent}")
        self.previous: List[dict] = []
        self._repair: Optional[Callable[[], None]] = None
        self._mode = "a"
        if self.path.exists() and resume:
            self.previous, self._repair = self._resume()
        elif self.path.exists() and not overwrite:
            raise InvalidInputError(f"output file exists: {self.path} (use --resume to continue it, "
                                    f"--overwrite to replace it)")
        elif self.path.exists():
            self._mode = "w"  # replaced at the first line, not before
        self.done: Set[str] = {line["image"] for line in self.previous}
        self._resolved: Set[str] = {_resolved(key) for key in self.done}
        self._handle = None

    def _resume(self) -> Tuple[List[dict], Optional[Callable[[], None]]]:
        """Check the file: (the records kept, the repair to make before the first new line)."""
        data = self.path.read_bytes()
        records, tail = _split(data, self.path)
        if tail and not records and not tail.lstrip().startswith(b"{"):
            raise InvalidInputError(f"{self.path} is not an os2d --jsonl file (no JSON lines); not resuming it")
        kept = [r for r in records if "error" not in r]
        if tail:
            logger.warning("%s: its last line was cut short (%d bytes); it is done again", self.path, len(tail))
        if len(kept) < len(records):
            logger.warning("%s: %d images with an error line are tried again", self.path, len(records) - len(kept))
            text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
            return kept, lambda: atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        if tail:
            return kept, lambda: os.truncate(self.path, len(data) - len(tail))
        return kept, None

    def _open(self) -> None:
        if self._repair is not None:
            self._repair()
            self._repair = None
        self._handle = open(self.path, self._mode, encoding="utf-8")

    def is_done(self, image: Union[str, Path]) -> bool:
        """Whether ``image`` has a line (by the path as given, or the same file spelled otherwise)."""
        return str(image) in self.done or _resolved(str(image)) in self._resolved

    def write(self, record: Dict) -> None:
        """Append one line and flush it to the operating system."""
        if self._handle is None:
            self._open()
        self._handle.write(json.dumps(record, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done.add(str(record["image"]))
        self._resolved.add(_resolved(str(record["image"])))

    def close(self) -> None:
        """Close the file (making the repair of a resumed file even when no line was added)."""
        if self._handle is None and self._repair is not None:
            self._repair()
            self._repair = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> Optional[bool]:
        self.close()
        return None


def _resolved(image: str) -> str:
    try:
        return str(Path(image).resolve())
    except (OSError, RuntimeError):
        return image
