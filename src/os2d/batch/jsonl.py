"""JSON lines results: one object per scene image, written and flushed as soon as it is known.

Line format (``docs/batch.md``)::

    {"image": "<path as given>", "width": W, "height": H, "seconds": t,
     "detections": [{"class": ..., "score": ..., "bbox": [x1, y1, x2, y2]}, ...]}
    {"image": "<path>", "error": "<one-line message>"}          # an image that could not be read

With ``resume``, the images already in the file are skipped; a last line cut short by a killed run is
removed first. Without ``resume`` or ``overwrite`` an existing file is refused.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Set

from os2d.errors import InputNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)


def read_jsonl(path: Path) -> List[dict]:
    """Every complete line of a results file (a truncated last line is ignored)."""
    lines = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                break  # cut short by a kill
            try:
                lines.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise InvalidInputError(f"{path}:{number} is not a JSON line ({err})") from None
    return lines


class JsonlWriter:
    """Append results to ``path`` (see the module docstring).

    Args:
        path: the JSONL file.
        resume: keep the lines already there and report their images as done.
        overwrite: replace an existing file (without ``resume``).
    """

    def __init__(self, path: Path, *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise InputNotFoundError(f"output folder does not exist: {self.path.parent}")
        if self.path.is_dir():
            raise InvalidInputError(f"--jsonl must be a file, got a folder: {self.path}")
        self.done: Set[str] = set()
        if self.path.exists() and resume:
            self._truncate_partial_line()
            self.done = {str(line["image"]) for line in read_jsonl(self.path) if "image" in line}
        elif self.path.exists() and not overwrite:
            raise InvalidInputError(f"output file exists: {self.path} (use --resume to continue it, "
                                    f"--overwrite to replace it)")
        elif self.path.exists():
            self.path.unlink()
        self._handle = None

    def _truncate_partial_line(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            logger.warning("%s: removing a last line cut short (%d bytes)", self.path, len(data) - end)
            with open(self.path, "r+b") as handle:
                handle.truncate(end)

    def write(self, record: Dict) -> None:
        """Append one line and flush it to the operating system."""
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done.add(str(record["image"]))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> Optional[bool]:
        self.close()
        return None
