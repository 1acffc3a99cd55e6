"""The output folder of ``os2d synth``: safety checks, a staging folder, publishing at the end.

A dataset is written into a hidden staging folder beside ``OUT``
(``.OUT.synth-<pid>-<random>.tmp``) and moved into place only when complete, so a failure or an
interrupt leaves ``OUT`` as it was (no partial dataset). Staging folders of killed runs (their
process is gone) are removed at the next run for the same ``OUT``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import List, Optional, Sequence

from os2d.errors import InvalidInputError

logger = logging.getLogger(__name__)

CONFIG_FILE = "synth_config.json"
TOOL_ID = "os2d synth"
_SUBDIRS = ("classes/images", "classes", "src")  # deepest first, for removal


def read_manifest(out: Path) -> Optional[dict]:
    """The ``synth_config.json`` of a previous run in ``out``, or None if absent or foreign."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("tool") != TOOL_ID or not isinstance(data.get("files"), list):
        return None
    return data


def safe_member(out: Path, rel: object) -> Optional[Path]:
    """``out / rel`` if ``rel`` is a plain relative path inside ``out``; else None."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return None
    pure = PurePosixPath(rel)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in pure.parts):
        return None
    path = out.joinpath(*pure.parts)
    try:
        path.parent.resolve().relative_to(out.resolve())
    except ValueError:
        return None
    return path


def check_output(out: Path, *, overwrite: bool, planned: Sequence[str], inputs: Sequence[Path]) -> List[Path]:
    """Check that ``out`` may receive a dataset; nothing is changed.

    ``out`` must be new or empty. With ``overwrite`` it may hold a previous run's output: the
    files its ``synth_config.json`` lists are returned (to remove when publishing); refuses if a
    planned file exists that the previous run did not write, or if an input is one of its files.
    """
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output path exists and is not a folder: {out}")
    if not out.is_dir() or not any(out.iterdir()):
        return []
    if not overwrite:
        raise InvalidInputError(f"output folder is not empty: {out} "
                                f"(pass --overwrite to replace a previous 'os2d synth' output there)")
    manifest = read_manifest(out)
    if manifest is None:
        raise InvalidInputError(f"refusing to overwrite {out}: it is not empty and has no {CONFIG_FILE} "
                                f"written by 'os2d synth'; choose an empty or new folder")
    old = [p for p in (safe_member(out, rel) for rel in manifest["files"]) if p is not None]
    old_existing = {p.resolve() for p in old if p.exists() or p.is_symlink()}
    for src in inputs:
        if src.resolve() in old_existing:
            raise InvalidInputError(f"refusing to overwrite {out}: input {src} is one of the files "
                                    f"a previous run wrote there; copy it elsewhere first")
    old_names = {p.resolve() for p in old}
    for rel in planned:
        path = safe_member(out, rel)
        if path is not None and (path.exists() or path.is_symlink()) and path.resolve() not in old_names:
            raise InvalidInputError(f"refusing to overwrite {path}: it was not written by 'os2d synth'")
    return old


def make_parents(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; return the created ones (deepest last)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove the given folders (deepest first) if they are empty."""
    for path in reversed(list(folders)):
        try:
            path.rmdir()
        except OSError:
            return


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.synth-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out: Path) -> None:
    """Remove staging folders of earlier runs for ``out`` whose process no longer exists."""
    prefix = _staging_prefix(out)
    if not out.parent.is_dir():
        return
    for path in out.parent.iterdir():
        name = path.name
        if not (name.startswith(prefix) and name.endswith(".tmp")) or path.is_symlink() or not path.is_dir():
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            logger.warning("removing the staging folder of an interrupted 'os2d synth' run: %s", path)
            shutil.rmtree(path, ignore_errors=True)


def new_staging(out: Path) -> Path:
    """A new, empty staging folder beside ``out`` (normal permissions)."""
    path = Path(tempfile.mkdtemp(dir=out.parent, prefix=f"{_staging_prefix(out)}{os.getpid()}-", suffix=".tmp"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    return path


def publish(staging: Path, out: Path, old: Sequence[Path]) -> None:
    """Move the complete dataset in ``staging`` to ``out``; remove a previous run's ``old`` files.

    A new or empty ``out`` is replaced by ``staging`` in one rename. Otherwise the old files go
    first, then every new file moves in, the manifest last.
    """
    if not out.exists():
        os.rename(staging, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.rename(staging, out)
        return
    for path in old:
        if path.is_symlink() or path.is_file():
            path.unlink()
    files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.name == CONFIG_FILE)
    for src in files:
        target = out / src.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
    for sub in _SUBDIRS:
        folder = out / sub
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    shutil.rmtree(staging)
