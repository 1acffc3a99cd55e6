"""Writing a synthetic dataset in the OS2D CSV layout, without ever destroying user files.

Layout of ``OUT``::

    OUT/classes/<name>.csv        one row per box (columns: CSV_COLUMNS)
    OUT/classes/images/<file>     the class images, copied byte for byte
    OUT/src/<name>_000000.jpg     the scenes
    OUT/synth_config.json         config, seed, inputs and the list of files this tool wrote

Classes come from class image files (each is both the class image and what gets pasted) and/or a
class table (:mod:`os2d.synth.sources`: class image, paste images, group per class).
``--overwrite`` removes only the files listed in an existing ``synth_config.json``. Everything is
written into a staging folder first and moved into ``OUT`` when complete (see ``os2d.synth.output``).
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union


from os2d.data.images import read_image_header
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write_text
from os2d.synth.compose import BackgroundPool, Scene, compose_scene
from os2d.synth.config import SynthConfig
from os2d.synth.objects import ClassImage, ClassSource, load_class_image
from os2d.synth.shelf import compose_shelf_scene
from os2d.synth.sources import read_class_table, sources_from_images
from os2d.synth.output import (
    CONFIG_FILE,
    TOOL_ID,
    check_output,
    make_parents,
    new_staging,
    publish,
    remove_empty,
    remove_stale_staging,
)

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("gtbboxid", "classid", "imageid", "imagefilename", "classfilename", "difficult",
               "lx", "ty", "rx", "by", "split", "classname")
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
        elif not path.is_file():
            raise InvalidInputError(f"{what} is not a regular file (a FIFO, socket or device?): {path}")
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


def load_sources(class_inputs: Iterable[PathLike], class_table: Optional[PathLike], *,
                 config: SynthConfig) -> List[ClassSource]:
    """Class sources of image files/folders and/or a class table, sorted by name (names unique)."""
    inputs = list(class_inputs)
    if not inputs and class_table is None:
        raise InvalidInputError("no class images given (--classes and/or --class-table)")
    sources = []
    if inputs:
        sources += sources_from_images(collect_images(inputs, what="class image"), mask=config.mask,
                                       tolerance=config.mask_tolerance)
    if class_table is not None:
        sources += read_class_table(Path(class_table), mask=config.mask, tolerance=config.mask_tolerance)
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInputError(f"class names given twice (class images and class table): {dupes[:5]}")
    return sorted(sources, key=lambda s: s.name)


def source_files(sources: Sequence[ClassSource]) -> List[Path]:
    """Every input file of the sources (class images and paste images)."""
    files = {s.class_file for s in sources}
    files.update(a.path for s in sources for a in s.appearances if a.path is not None)
    return sorted(files)


def check_images_readable(paths: Sequence[Path], *, what: str) -> None:
    """Cheap header check of every image: file type, format, pixel count (full decoding
    happens later, lazily; a failure then leaves no output, see :func:`generate_dataset`)."""
    for path in paths:
        read_image_header(path, what=what)


def scene_file_name(config: SynthConfig, index: int) -> str:
    return f"{config.name}_{index:06d}.jpg"


def class_file_name(cls: Union[ClassImage, ClassSource]) -> str:
    if isinstance(cls, ClassSource):
        return cls.output_name
    return cls.path.name if cls.path is not None else f"{cls.name}.jpg"


def planned_files(config: SynthConfig, classes: Sequence[ClassSource]) -> List[str]:
    """Relative POSIX paths of every file a run may write (the manifest)."""
    files = [CONFIG_FILE, f"classes/{config.name}.csv"]
    files += [f"classes/images/{class_file_name(c)}" for c in classes]
    files += [f"src/{scene_file_name(config, i)}" for i in range(config.num_scenes)]
    return files


def _write_manifest(out: Path, config: SynthConfig, classes: Sequence[ClassSource],
                    backgrounds: Sequence[Path], files: Sequence[str], complete: bool,
                    stats: Optional[dict] = None, class_table: Optional[Path] = None) -> None:
    data = {
        "tool": TOOL_ID,
        "format_version": FORMAT_VERSION,
        "complete": complete,
        "seed": config.seed,
        "config": config.to_dict(),
        "class_table": str(class_table) if class_table is not None else None,
        "classes": [{"name": c.name, "file": class_file_name(c), "source": str(c.class_file),
                     "masked": any(a.masked for a in c.appearances), "group": c.group,
                     "paste_images": len(c.appearances)} for c in classes],
        "backgrounds": [str(p) for p in backgrounds],
        "stats": stats or {},
        "files": list(files),
    }
    atomic_write_text(out / CONFIG_FILE, json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def scene_rows(scene: Scene, classes: Sequence[Union[ClassImage, ClassSource]], config: SynthConfig,
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


def compose(index: int, classes: Sequence[ClassSource], pool: BackgroundPool, config: SynthConfig) -> Scene:
    """Scene ``index`` in the config's layout."""
    if config.layout == "shelf":
        return compose_shelf_scene(index, classes, pool, config)
    return compose_scene(index, classes, pool, config)


def _write_scenes(staging: Path, config: SynthConfig, classes: Sequence[ClassSource],
                  bg_paths: Sequence[Path], progress: Optional[Callable[[int], None]]) -> List[dict]:
    """Compose and write every scene into ``staging/src``; return the CSV rows."""
    pool = BackgroundPool(bg_paths, config.scene_size)
    rows: List[dict] = []
    for index in range(config.num_scenes):
        scene = compose(index, classes, pool, config)
        if scene.objects:
            (staging / "src" / scene_file_name(config, index)).write_bytes(scene.encode_jpeg())
            rows.extend(scene_rows(scene, classes, config, len(rows)))
        else:
            logger.warning("scene %d: no object could be placed; skipped", index)
        if progress is not None:
            progress(1)
    if not rows:
        raise InvalidInputError(
            f"no object could be placed in any of the {config.num_scenes} scenes (min_box_size "
            f"{config.min_box_size} px, scene_size {config.scene_size} px, object_size "
            f"{config.object_size}); nothing was written")
    return rows


def _write_dataset(staging: Path, config: SynthConfig, classes: Sequence[ClassSource],
                   bg_paths: Sequence[Path], progress: Optional[Callable[[int], None]],
                   class_table: Optional[Path] = None) -> dict:
    """Write the whole dataset into ``staging``; return its stats."""
    (staging / "src").mkdir()
    (staging / "classes" / "images").mkdir(parents=True)
    rows = _write_scenes(staging, config, classes, bg_paths, progress)
    written = [CONFIG_FILE, f"classes/{config.name}.csv"]
    written += sorted({f"src/{r['imagefilename']}" for r in rows})
    for cls in classes:
        rel = f"classes/images/{class_file_name(cls)}"
        shutil.copyfile(cls.class_file, staging / rel)
        written.append(rel)
    with open(staging / "classes" / f"{config.name}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    stats = {"scenes": len({r["imageid"] for r in rows}), "boxes": len(rows),
             "difficult": sum(r["difficult"] for r in rows), "classes": len(classes)}
    _write_manifest(staging, config, classes, bg_paths, written, complete=True, stats=stats,
                    class_table=class_table)
    return stats


def generate_dataset(class_inputs: Iterable[PathLike], background_inputs: Iterable[PathLike],
                     out: PathLike, config: SynthConfig, *, overwrite: bool = False,
                     progress: Optional[Callable[[int], None]] = None,
                     class_table: Optional[PathLike] = None) -> SynthSummary:
    """Compose ``config.num_scenes`` scenes and write them in the OS2D CSV layout under ``out``.

    ``class_inputs`` / ``background_inputs``: image files and/or folders; ``class_table``: a class
    table CSV (:func:`os2d.synth.sources.read_class_table`), alone or with ``class_inputs``.
    ``config.layout`` chooses the random or the shelf layout. ``progress(n)`` is
    called after each scene. All inputs are checked before anything is written; the dataset is
    written into a staging folder beside ``out`` and moved into place when complete, so an
    error (e.g. a background that turns out truncated) or an interrupt leaves ``out`` as it was.
    """
    config.validate()
    out = Path(out)
    classes = load_sources(class_inputs, class_table, config=config)
    bg_paths = collect_images(background_inputs, what="background image")
    check_images_readable(bg_paths, what="background image")
    inputs = source_files(classes) + list(bg_paths) + ([Path(class_table)] if class_table is not None else [])
    old = check_output(out, overwrite=overwrite, planned=planned_files(config, classes), inputs=inputs)
    created = make_parents(out.parent)
    remove_stale_staging(out)
    staging = new_staging(out)
    try:
        stats = _write_dataset(staging, config, classes, bg_paths, progress,
                               Path(class_table) if class_table is not None else None)
        publish(staging, out, old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty(created)
        raise
    return SynthSummary(out=out, csv_path=out / "classes" / f"{config.name}.csv", num_scenes=stats["scenes"],
                        num_boxes=stats["boxes"], num_difficult=stats["difficult"], num_classes=len(classes))
