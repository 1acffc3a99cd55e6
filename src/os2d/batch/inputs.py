"""Expanding ``--image`` arguments: files, folders (their images) and glob patterns."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, List, Union

from os2d.errors import InputNotFoundError, InvalidInputError

#: Suffixes of the files taken from folders and glob patterns (explicit files may have any).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
_GLOB_CHARS = set("*?[")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def expand_images(specs: Iterable[Union[str, Path]], *, recursive: bool = False) -> List[Path]:
    """Image paths from files, folders and glob patterns, in order, without duplicates.

    * an existing file is taken as it is (any suffix: it is checked when read);
    * a folder gives its image files (by suffix), sorted; with ``recursive`` also those of subfolders;
    * a pattern with ``*``, ``?`` or ``[`` gives the matching image files, sorted (``**`` recurses).

    Raises:
        InputNotFoundError: a path that does not exist, or a pattern matching no image.
        InvalidInputError: nothing given, an empty string, or a folder without images.
    """
    out: List[Path] = []
    seen = set()
    specs = [str(s) for s in specs]
    if not specs:
        raise InvalidInputError("no scene image given: use --image FILE, FOLDER or 'PATTERN'")
    for spec in specs:
        if not spec.strip():
            raise InvalidInputError("--image got an empty path (\"\"); give a file, folder or quoted pattern")
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if _is_image(p))
            if not found:
                raise InvalidInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        elif path.exists():
            found = [path]
        elif _GLOB_CHARS & set(spec):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if _is_image(Path(p)))
            if not found:
                raise InputNotFoundError(f"no image matches the pattern {spec!r}")
        else:
            raise InputNotFoundError(f"scene image not found: {path}")
        for p in found:
            key = str(p.resolve())
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out
