"""The output folder of an export: checks before any work, a staging folder, publishing at the end.

Files are written into a hidden staging folder beside ``OUT`` (``.OUT.export-<pid>-<random>.tmp``)
and moved into place only when every file is complete, so a failure or an interrupt leaves ``OUT``
as it was. ``OUT`` must be new or empty; with ``overwrite`` an existing folder receives the export's
files (replacing only files of the same names, ``export.json`` last) and keeps every other file.
Staging folders of killed runs (their process is gone) are removed at the next export to ``OUT``.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from os2d.errors import InputNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)


def check_output_folder(out: Path, *, files: Sequence[str], overwrite: bool) -> None:
    """Refuse an ``out`` that the export may not write (nothing is changed).

    Raises:
        InvalidInputError: ``out`` is a file; ``out`` is a non-empty folder and ``overwrite`` is
            not set; one of ``files`` exists in ``out`` as something other than a file.
        InputNotFoundError: the parent folder of ``out`` does not exist.
    """
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out must be a folder, got an existing file: {out}")
    if not out.exists():
        if not out.parent.is_dir():
            raise InputNotFoundError(f"parent folder of --out does not exist: {out.parent}")
        return
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise InvalidInputError(f"output folder is not empty: {out} (choose a new or empty folder, or pass "
                                f"--overwrite to replace the files {', '.join(files)} there)")
    for name in files:
        path = out / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise InvalidInputError(f"refusing to overwrite {path}: it is not a regular file")


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.export-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out: Path) -> None:
    """Remove staging folders of earlier exports to ``out`` whose process no longer exists."""
    prefix = _staging_prefix(out)
    if not out.parent.is_dir():
        return
    for path in out.parent.iterdir():
        name = path.name
        if not (name.startswith(prefix) and name.endswith(".tmp")) or path.is_symlink() or not path.is_dir():
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            logger.warning("removing the staging folder of an interrupted export: %s", path)
            shutil.rmtree(path, ignore_errors=True)


def new_staging(out: Path) -> Path:
    """A new, empty staging folder beside ``out`` (normal folder permissions)."""
    path = Path(tempfile.mkdtemp(dir=out.parent, prefix=f"{_staging_prefix(out)}{os.getpid()}-", suffix=".tmp"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    return path


def publish(staging: Path, out: Path, *, last: str) -> None:
    """Move the files of ``staging`` to ``out`` (``last`` moved last); ``staging`` is gone afterwards.

    A new or empty ``out`` is replaced by ``staging`` in one rename; otherwise each file replaces
    the file of the same name (``os.replace``) and other files in ``out`` stay.
    """
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(staging, out)
        return
    files = sorted((p for p in staging.iterdir() if p.is_file()), key=lambda p: (p.name == last, p.name))
    for src in files:
        os.replace(src, out / src.name)
    shutil.rmtree(staging)
