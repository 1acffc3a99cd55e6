"""Output files of ``os2d detect``: every one is checked before any computation, written atomically.

Rules: an existing file is never replaced without ``--overwrite`` (``--jsonl`` continues with
``--resume``); two outputs may not be the same file; no output may be one of the inputs (scene or
class images); folders for ``--draw``/``--crops`` are created when missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import torch

from os2d.draw import check_drawing_path
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

    @property
    def keeps_results(self) -> bool:
        """Whether results must be kept in memory until the end of the run."""
        return self.json is not None or self.coco is not None


def _draw_targets(draw: Optional[Path], images: Sequence[Path], *, overwrite: bool) -> Dict[str, Path]:
    if draw is None:
        return {}
    if len(images) == 1 and draw.suffix and not draw.is_dir():
        check_drawing_path(draw)
        check_file_output(draw, flag="--draw", overwrite=overwrite)
        return {str(images[0]): draw}
    if draw.exists() and not draw.is_dir():
        raise InvalidInputError(f"--draw with several scenes must be a folder, got a file: {draw}")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise InvalidInputError("--draw folder: several scene images share a file name; draw them one at a time")
    targets = {str(p): draw / f"{p.stem}_detections.png" for p in images}
    for target in targets.values():
        if draw.is_dir():
            check_file_output(target, flag="--draw", overwrite=overwrite)
    return targets


def plan_outputs(*, json: Optional[Path], jsonl: Optional[Path], coco: Optional[Path], draw: Optional[Path],
                 crops: Optional[Path], images: Sequence[Path], inputs: Iterable[Path], overwrite: bool,
                 resume: bool) -> OutputPlan:
    """Check every output before computing (see the module docstring)."""
    check_file_output(json, flag="--json", overwrite=overwrite)
    check_file_output(coco, flag="--coco", overwrite=overwrite)
    if jsonl is not None:
        check_file_output(jsonl, flag="--jsonl", overwrite=overwrite or resume)
    if resume and jsonl is None:
        raise InvalidInputError("--resume continues a --jsonl file: give --jsonl OUT")
    if crops is not None and crops.exists() and (not crops.is_dir() or (any(crops.iterdir()) and not overwrite)):
        what = "a file" if not crops.is_dir() else "a folder that is not empty (use --overwrite to add to it)"
        raise InvalidInputError(f"--crops must be a new or empty folder, got {what}: {crops}")
    plan = OutputPlan(json=json, jsonl=jsonl, coco=coco, crops=crops,
                      drawings=_draw_targets(draw, images, overwrite=overwrite))
    files = [p for p in (json, jsonl, coco) if p is not None] + list(plan.drawings.values())
    resolved = [p.resolve() for p in files]
    if len(set(resolved)) != len(resolved):
        raise InvalidInputError("two outputs name the same file (--json, --jsonl, --coco, --draw must differ)")
    sources = {Path(p).resolve() for p in inputs}
    clash = [str(p) for p, r in zip(files, resolved) if r in sources]
    if clash:
        raise InvalidInputError(f"an output would replace an input image: {clash[0]}")
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
