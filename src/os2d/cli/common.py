"""Helpers shared by the CLI subcommands: option parsing, output safety, progress bars."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional

from os2d.errors import InputNotFoundError, InvalidInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def parse_scales(text: Optional[str]) -> Optional[List[float]]:
    """``"640,800,1024"`` -> ``[640.0, 800.0, 1024.0]``."""
    if text is None or text.strip() == "":
        return None
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise InvalidInputError(f"--scales must be comma-separated numbers of pixels, got {text!r}") from err
    if not values or any(v < 32 for v in values):
        raise InvalidInputError(f"--scales must be pixel sizes of at least 32, got {text!r}")
    return values


def parse_class_args(pairs: List[str], folder: Optional[Path]) -> Dict[str, List[Path]]:
    """``--class NAME=IMG`` pairs and ``--classes DIR`` -> ``{name: [image paths]}``."""
    classes: Dict[str, List[Path]] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InvalidInputError(f"--class expects NAME=IMAGE, got {pair!r}")
        classes.setdefault(name.strip(), []).append(Path(path.strip()))
    if folder is not None:
        for name, paths in classes_from_folder(folder).items():
            classes.setdefault(name, []).extend(paths)
    if not classes:
        raise InvalidInputError("no class images given: use --class NAME=IMAGE or --classes DIR")
    return classes


def classes_from_folder(folder: Path) -> Dict[str, List[Path]]:
    """Every image in ``folder``; the file stem is the class name (``NAME__2.jpg`` adds to NAME)."""
    if not folder.exists():
        raise InputNotFoundError(f"class image folder not found: {folder}")
    if not folder.is_dir():
        raise InvalidInputError(f"--classes expects a folder, got a file: {folder}")
    classes: Dict[str, List[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            name = path.stem.split("__")[0].strip()
            if not name:
                raise InvalidInputError(f"class image {path.name!r} in {folder} gives an empty class name (the name "
                                        f"is the file name before '__' and the suffix); rename the file")
            classes.setdefault(name, []).append(path)
    if not classes:
        raise InvalidInputError(f"no class images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return classes


def check_output(path: Optional[Path], *, overwrite: bool) -> None:
    """Refuse to overwrite an existing file unless asked; the parent folder must exist."""
    if path is None:
        return
    if path.exists() and path.is_file() and not overwrite:
        raise InvalidInputError(f"output file exists: {path} (use --overwrite to replace it)")
    if not path.parent.exists():
        raise InputNotFoundError(f"output folder does not exist: {path.parent}")


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal."""
    return sys.stderr.isatty()
