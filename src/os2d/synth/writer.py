"""Writing a synthetic dataset in the OS2D CSV layout, without ever destroying user files.

Layout of ``OUT``::

    OUT/classes/<name>.csv        one row per box (columns: CSV_COLUMNS)
    OUT/classes/images/<file>     the class images, copied byte for byte
    OUT/src/<name>_000000.jpg     the scenes
    OUT/synth_config.json         config, seed, inputs and the list of files this tool wrote

``--overwrite`` removes only the files listed in an existing ``synth_config.json``.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from PIL import Image

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write_text
from os2d.synth.compose import (
    BackgroundPool,
    ClassImage,
    Scene,
    compose_scene,
    load_class_image,
)
from os2d.synth.config import SynthConfig

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("gtbboxid", "classid", "imageid", "imagefilename", "classfilename", "difficult",
               "lx", "ty", "rx", "by", "split", "classname")
CONFIG_FILE = "synth_config.json"
TOOL_ID = "os2d synth"
FORMAT_VERSION = 1

#: File name endings treated as images when a folder is given.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")

PathLike = Union[str, Path]


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    out: Path
    csv_path: Path
    num_scenes: int  # scenes written (scenes where no object fitted are skipped)
    num_boxes: int
    num_difficult: int
    num_classes: int


def collect_images(inputs: Iterable[PathLike], *, what: str) -> List[Path]:
    """Image files from files and folders (folders: their image files, not recursive, sorted).

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` when nothing is found.
    """
    inputs = [Path(p) for p in inputs]
    found: List[Path] = []
    for path in inputs:
        if not path.exists():
            raise InputNotFoundError(f"{what} path not found: {path}")
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise InvalidInputError(f"no {what}s found in folder {path} "
                                 f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
            found.extend(files)
        else:
            found.append(path)
    if not found:
        raise InvalidInputError(f"no {what}s given")
    seen = set()
    unique = []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def load_classes(paths: Sequence[Path], *, mask: str, tolerance: int = 30) -> List[ClassImage]:
    """Load class images (name = file stem), sorted by name; duplicate names are an error."""
    by_name: Dict[str, Path] = {}
    for path in paths:
        if path.stem in by_name:
            raise InvalidInputError(f"two class images have the same name {path.stem!r}: "
                             f"{by_name[path.stem]} and {path}")
        by_name[path.stem] = path
    return [load_class_image(by_name[name], mask=mask, tolerance=tolerance) for name in sorted(by_name)]


def check_images_readable(paths: Sequence[Path], *, what: str) -> None:
    """Cheap header check of every image (full decoding happens later, lazily)."""
    for path in paths:
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018 - header parsed by open()
        except FileNotFoundError:
            raise InputNotFoundError(f"{what} not found: {path}") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise InvalidInputError(f"{what} is not a readable image: {path}") from err


def scene_file_name(config: SynthConfig, index: int) -> str:
    return f"{config.name}_{index:06d}.jpg"


def class_file_name(cls: ClassImage) -> str:
    return cls.path.name if cls.path is not None else f"{cls.name}.jpg"


def planned_files(config: SynthConfig, classes: Sequence[ClassImage]) -> List[str]:
    """Relative POSIX paths of every file a run may write (the manifest)."""
    files = [CONFIG_FILE, f"classes/{config.name}.csv"]
    files += [f"classes/images/{class_file_name(c)}" for c in classes]
    files += [f"src/{scene_file_name(config, i)}" for i in range(config.num_scenes)]
    return files


# --------------------------------------------------------------------------------------------
# Output folder safety
# --------------------------------------------------------------------------------------------


def _read_manifest(out: Path) -> Optional[dict]:
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


def _safe_member(out: Path, rel: object) -> Optional[Path]:
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


def _listed_files(out: Path, manifest: dict) -> List[Path]:
    return [p for p in (_safe_member(out, rel) for rel in manifest["files"]) if p is not None]


def prepare_output(out: Path, *, overwrite: bool, planned: Sequence[str], inputs: Sequence[Path]) -> None:
    """Make ``out`` ready: create it, or refuse if it is not empty. With ``overwrite``, remove the
    files listed by a previous run's ``synth_config.json`` (nothing else) and refuse if a
    remaining file would be overwritten or if an input would be deleted."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output path exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InvalidInputError(f"output folder is not empty: {out} "
                             f"(pass --overwrite to replace a previous 'os2d synth' output there)")
        manifest = _read_manifest(out)
        if manifest is None:
            raise InvalidInputError(f"refusing to overwrite {out}: it is not empty and has no {CONFIG_FILE} "
                             f"written by 'os2d synth'; choose an empty or new folder")
        old = _listed_files(out, manifest)
        old_set = {p.resolve() for p in old if p.exists() or p.is_symlink()}
        for src in inputs:
            if src.resolve() in old_set:
                raise InvalidInputError(f"refusing to overwrite {out}: input {src} is one of the files "
                                 f"a previous run wrote there; copy it elsewhere first")
        old_names = {p.resolve() for p in old}
        for rel in planned:  # check everything before deleting anything
            path = _safe_member(out, rel)
            if path is not None and (path.exists() or path.is_symlink()) and path.resolve() not in old_names:
                raise InvalidInputError(f"refusing to overwrite {path}: it was not written by 'os2d synth'")
        for path in old:
            if path.is_symlink() or path.is_file():
                path.unlink()
        for sub in ("classes/images", "classes", "src"):
            d = out / sub
            if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
    out.mkdir(parents=True, exist_ok=True)


def _write_manifest(out: Path, config: SynthConfig, classes: Sequence[ClassImage],
                    backgrounds: Sequence[Path], files: Sequence[str], complete: bool,
                    stats: Optional[dict] = None) -> None:
    data = {
        "tool": TOOL_ID,
        "format_version": FORMAT_VERSION,
        "complete": complete,
        "seed": config.seed,
        "config": config.to_dict(),
        "classes": [{"name": c.name, "file": class_file_name(c),
                     "source": str(c.path) if c.path else None, "masked": c.masked} for c in classes],
        "backgrounds": [str(p) for p in backgrounds],
        "stats": stats or {},
        "files": list(files),
    }
    atomic_write_text(out / CONFIG_FILE, json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def scene_rows(scene: Scene, classes: Sequence[ClassImage], config: SynthConfig,
               first_box_id: int) -> List[dict]:
    """CSV rows (dicts keyed by CSV_COLUMNS) of one scene's objects."""
    width, height = scene.size
    rows = []
    for k, obj in enumerate(scene.objects):
        x1, y1, x2, y2 = obj.box
        rows.append({
            "gtbboxid": first_box_id + k,
            "classid": obj.class_index,
            "imageid": scene.index,
            "imagefilename": scene_file_name(config, scene.index),
            "classfilename": class_file_name(classes[obj.class_index]),
            "difficult": int(obj.difficult),
            "lx": x1 / width,
            "ty": y1 / height,
            "rx": x2 / width,
            "by": y2 / height,
            "split": config.split,
            "classname": obj.class_name,
        })
    return rows


def generate_dataset(class_inputs: Iterable[PathLike], background_inputs: Iterable[PathLike],
                     out: PathLike, config: SynthConfig, *, overwrite: bool = False,
                     progress: Optional[Callable[[int], None]] = None) -> SynthSummary:
    """Compose ``config.num_scenes`` scenes and write them in the OS2D CSV layout under ``out``.

    ``class_inputs`` / ``background_inputs``: image files and/or folders. ``progress(n)`` is
    called after each scene. All inputs are checked before anything in ``out`` is touched.
    """
    config.validate()
    out = Path(out)
    class_paths = collect_images(class_inputs, what="class image")
    bg_paths = collect_images(background_inputs, what="background image")
    classes = load_classes(class_paths, mask=config.mask, tolerance=config.mask_tolerance)
    check_images_readable(bg_paths, what="background image")
    files = planned_files(config, classes)
    prepare_output(out, overwrite=overwrite, planned=files, inputs=list(class_paths) + list(bg_paths))
    _write_manifest(out, config, classes, bg_paths, files, complete=False)

    (out / "src").mkdir(exist_ok=True)
    (out / "classes" / "images").mkdir(parents=True, exist_ok=True)
    pool = BackgroundPool(bg_paths, config.scene_size)
    rows: List[dict] = []
    written = [CONFIG_FILE, f"classes/{config.name}.csv"]
    n_scenes = 0
    for index in range(config.num_scenes):
        scene = compose_scene(index, classes, pool, config)
        if scene.objects:
            rel = f"src/{scene_file_name(config, index)}"
            (out / rel).write_bytes(scene.encode_jpeg())
            written.append(rel)
            rows.extend(scene_rows(scene, classes, config, len(rows)))
            n_scenes += 1
        else:
            logger.warning("scene %d: no object could be placed; skipped", index)
        if progress is not None:
            progress(1)

    for cls in classes:
        rel = f"classes/images/{class_file_name(cls)}"
        if cls.data is not None:
            (out / rel).write_bytes(cls.data)
        else:
            Image.fromarray(cls.image).save(out / rel, format="JPEG", quality=95)
        written.append(rel)
    csv_path = out / "classes" / f"{config.name}.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    stats = {"scenes": n_scenes, "boxes": len(rows),
             "difficult": sum(r["difficult"] for r in rows), "classes": len(classes)}
    _write_manifest(out, config, classes, bg_paths, written, complete=True, stats=stats)
    return SynthSummary(out=out, csv_path=csv_path, num_scenes=n_scenes, num_boxes=len(rows),
                        num_difficult=stats["difficult"], num_classes=len(classes))
