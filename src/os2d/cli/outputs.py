"""Output files of ``os2d detect``: every one is checked before any computation, written atomically.

Rules: an existing file is never replaced without ``--overwrite`` (``--jsonl`` continues with
``--resume``); two outputs may not be the same file; no output may be one of the inputs (scene or
class images, a model file) nor lie inside a protected folder (the ``--catalog``, a model folder);
folders for ``--draw``/``--crops`` are created when missing. With ``--resume``, the drawings and
crops of the scenes already in the JSONL file are not made again (and their files not checked).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Dict, Iterable, List, Optional, Sequence

import torch

from os2d.draw import check_drawing_path
from os2d.draw.drawing import SUFFIX_FORMATS
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.structures import Detections


def check_file_output(path: Optional[Path], *, flag: str, overwrite: bool) -> None:
    """A file output: parent folder exists, not a folder, not an existing file unless ``overwrite``."""
    if path is None:
        return
    if path.is_dir():
        raise InvalidInputError(f"{flag} must be a file, got a folder: {path}")
    if path.exists() and not overwrite:
        raise InvalidInputError(f"output file exists: {path} (use --overwrite to replace it)")
    if not path.parent.is_dir():
        raise InputNotFoundError(f"output folder does not exist: {path.parent}")


@dataclass
class OutputPlan:
    """The checked outputs of one run."""

    json: Optional[Path] = None
    jsonl: Optional[Path] = None
    coco: Optional[Path] = None
    drawings: Dict[str, Path] = field(default_factory=dict)  # image key -> drawing file
    crops: Optional[Path] = None
    done: Collection[str] = ()  # image keys already in the resumed JSONL: no drawing or crops

    @property
    def keeps_results(self) -> bool:
        """Whether results must be kept in memory until the end of the run."""
        return self.json is not None or self.coco is not None


def _unique_stems(images: Sequence[Path], flag: str) -> None:
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise InvalidInputError(f"{flag}: several scene images share the file name {twice[0]!r} (their outputs "
                                f"would overwrite each other); process them in separate runs")


def _draw_is_file(draw: Optional[Path], images: Sequence[Path]) -> bool:
    """``--draw`` names the drawing itself (one scene, a name with a suffix), not a folder of drawings."""
    return draw is not None and len(images) == 1 and bool(draw.suffix) and not draw.is_dir()


def _draw_targets(draw: Optional[Path], images: Sequence[Path], *, overwrite: bool,
                  done: Collection[str]) -> Dict[str, Path]:
    if draw is None:
        return {}
    if _draw_is_file(draw, images):
        check_drawing_path(draw)
        if str(images[0]) in done:
            return {}
        check_file_output(draw, flag="--draw", overwrite=overwrite)
        return {str(images[0]): draw}
    if draw.exists() and not draw.is_dir():
        raise InvalidInputError(f"--draw with several scenes must be a folder, got a file: {draw}")
    if not draw.exists() and draw.suffix.lower() in SUFFIX_FORMATS:
        raise InvalidInputError(f"--draw with several scenes must be a folder, got an image file name: {draw}")
    if not draw.exists() and not draw.parent.is_dir():
        raise InputNotFoundError(f"output folder does not exist: {draw.parent}")
    _unique_stems(images, "--draw folder")
    targets = {str(p): draw / f"{p.stem}_detections.png" for p in images if str(p) not in done}
    for target in targets.values():
        if draw.is_dir():
            check_file_output(target, flag="--draw", overwrite=overwrite)
    return targets


def _check_crops(crops: Optional[Path], images: Sequence[Path], *, overwrite: bool, resume: bool) -> None:
    if crops is None:
        return
    if crops.exists() and not crops.is_dir():
        raise InvalidInputError(f"--crops must be a new or empty folder, got a file: {crops}")
    if crops.is_dir() and any(crops.iterdir()) and not (overwrite or resume):
        raise InvalidInputError(f"--crops must be a new or empty folder, got a folder that is not empty "
                                f"(use --overwrite to add to it): {crops}")
    if not crops.exists() and not crops.parent.is_dir():
        raise InputNotFoundError(f"output folder does not exist: {crops.parent}")
    _unique_stems(images, "--crops")


def _inside(path: Path, folders: Iterable[Path]) -> Optional[Path]:
    resolved = path.resolve()
    return next((f for f in folders if resolved == f or f in resolved.parents), None)


def plan_outputs(*, json: Optional[Path], jsonl: Optional[Path], coco: Optional[Path], draw: Optional[Path],
                 crops: Optional[Path], images: Sequence[Path], inputs: Iterable[Path], overwrite: bool,
                 resume: bool, done: Collection[str] = (), protected: Iterable[Path] = ()) -> OutputPlan:
    """Check every output before computing (see the module docstring).

    Args:
        done: image keys (``str(path)``) already in the resumed ``--jsonl`` file.
        protected: folders no output may be written into (the catalog, a model folder).
    """
    if resume and jsonl is None:
        raise InvalidInputError("--resume continues a --jsonl file: give --jsonl OUT")
    check_file_output(json, flag="--json", overwrite=overwrite)
    check_file_output(coco, flag="--coco", overwrite=overwrite)
    if jsonl is not None:
        check_file_output(jsonl, flag="--jsonl", overwrite=overwrite or resume)
    _check_crops(crops, images, overwrite=overwrite, resume=resume)
    plan = OutputPlan(json=json, jsonl=jsonl, coco=coco, crops=crops, done=set(done),
                      drawings=_draw_targets(draw, images, overwrite=overwrite, done=done))
    files = [p for p in (json, jsonl, coco) if p is not None] + list(plan.drawings.values())
    resolved = [p.resolve() for p in files]
    if len(set(resolved)) != len(resolved):
        raise InvalidInputError("two outputs name the same file (--json, --jsonl, --coco, --draw must differ)")
    folders_out = {p.resolve() for p in (crops, None if _draw_is_file(draw, images) else draw) if p is not None}
    taken = [str(p) for p, r in zip(files, resolved) if r in folders_out]
    if taken:
        raise InvalidInputError(f"output file {taken[0]} is also the --crops/--draw folder; choose another name")
    sources = {Path(p).resolve() for p in inputs}
    clash = [str(p) for p, r in zip(files, resolved) if r in sources]
    if clash:
        raise InvalidInputError(f"an output would replace an input file: {clash[0]}")
    folders = [Path(p).resolve() for p in protected]
    for out in files + [p for p in (draw, crops) if p is not None]:
        inside = _inside(out, folders)
        if inside is not None:
            raise InvalidInputError(f"output {out} is inside {inside}, an input of this run; choose another place")
    if crops is not None and crops.resolve() in {s.parent for s in sources} and not overwrite:
        raise InvalidInputError(f"--crops {crops} is the folder of input images; choose another folder")
    return plan


def detections_from_line(line: dict, class_names: List[str]) -> Detections:
    """A JSON-lines record back as :class:`Detections` (for drawings and crops of batch runs)."""
    dets = line.get("detections", [])
    index = {n: i for i, n in enumerate(class_names)}
    return Detections(boxes=torch.tensor([d["bbox"] for d in dets], dtype=torch.float32).reshape(-1, 4),
                      scores=torch.tensor([d["score"] for d in dets], dtype=torch.float32),
                      labels=torch.tensor([index[d["class"]] for d in dets], dtype=torch.int64),
                      class_names=list(class_names), image_size=(line["width"], line["height"]),
                      image_name=Path(line["image"]).name)
