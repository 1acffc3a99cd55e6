"""``os2d synth``: compose synthetic training scenes in the OS2D CSV layout."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer


class MaskMode(str, Enum):
    auto = "auto"
    none = "none"
    white = "white"


class Layout(str, Enum):
    random = "random"
    shelf = "shelf"


SHORT_HELP = "Compose synthetic training scenes with exact boxes (OS2D CSV layout)."
HELP = (
    "Compose synthetic scenes: class images (packshots, logo crops) pasted on background photos "
    "with random pose, lighting, blur, noise and occlusion. Writes OUT/classes/<name>.csv, "
    "OUT/classes/images/, OUT/src/ (the OS2D CSV layout, exact boxes) and OUT/synth_config.json. "
    "Deterministic given --seed.\n\n"
    "Class name = file stem. Paths after the options are taken as more class images, so "
    "`--classes a.jpg b.jpg` works. --class-table FILE.csv (name, class_image, paste_image, group, "
    "mask) gives classes whose class image differs from what is pasted (cut-outs, in-store crops) "
    "and groups (brands). --layout shelf stands products in rows on shelves (repeated facings, "
    "price tags, group mates side by side; see docs/synth.md)."
)


def synth(
    backgrounds: Annotated[List[Path], typer.Option(
        "--backgrounds", help="Folder (or file) of background photos (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Output dataset folder (new or empty).")],
    classes: Annotated[Optional[List[Path]], typer.Option(
        "--classes", help="Class image file or folder (repeatable; see also CLASS_IMAGES).",
        show_default=False)] = None,
    class_table: Annotated[Optional[Path], typer.Option(
        "--class-table", help="Class table CSV: name, class_image, paste_image, group, mask (paths "
                              "relative to the table).", show_default=False)] = None,
    layout: Annotated[Layout, typer.Option(
        "--layout", case_sensitive=False,
        help="random: objects scattered over the background; shelf: products in rows on shelves.")] = Layout.random,
    more_classes: Annotated[Optional[List[Path]], typer.Argument(
        metavar="CLASS_IMAGES", help="More class image files or folders.", show_default=False)] = None,
    num_scenes: Annotated[int, typer.Option(
        "--num-scenes", help="Number of scenes.")] = 100,
    seed: Annotated[int, typer.Option(
        "--seed", help="Random seed (scene i is the same for any --num-scenes).")] = 0,
    min_objects: Annotated[int, typer.Option(
        "--min-objects", help="Fewest objects per scene.")] = 1,
    max_objects: Annotated[int, typer.Option(
        "--max-objects", help="Most objects per scene.")] = 6,
    scene_size: Annotated[int, typer.Option(
        "--scene-size", help="Longer side of scenes, px.")] = 800,
    object_min: Annotated[float, typer.Option(
        "--object-min", help="Smallest object box (longer side) / scene longer side.")] = 0.08,
    object_max: Annotated[float, typer.Option(
        "--object-max", help="Largest object box (longer side) / scene longer side.")] = 0.5,
    min_box_size: Annotated[int, typer.Option(
        "--min-box-size", help="Skip objects whose box has a side below this, px.")] = 16,
    max_iou: Annotated[float, typer.Option(
        "--max-iou", help="Max IoU between two objects' boxes.")] = 0.3,
    mask: Annotated[MaskMode, typer.Option(
        "--mask", case_sensitive=False,
        help="Cut class images out of their background: auto (if the border is uniform), "
             "white, or none (paste the whole rectangle; use for logo crops).")] = MaskMode.auto,
    rotation_max_deg: Annotated[float, typer.Option(
        "--rotation-max-deg", help="Max in-plane rotation, degrees.")] = 15.0,
    occlusion_prob: Annotated[float, typer.Option(
        "--occlusion-prob", help="Chance of an extra occluder patch per object.")] = 0.25,
    max_occlusion: Annotated[float, typer.Option(
        "--max-occlusion", help="Never hide more than this fraction of an object.")] = 0.6,
    difficult_occlusion: Annotated[float, typer.Option(
        "--difficult-occlusion", help="Mark objects hidden by more than this fraction difficult.")] = 0.4,
    split: Annotated[str, typer.Option(
        "--split", help="Value of the split column.")] = "train",
    name: Annotated[str, typer.Option(
        "--name", help="Dataset name: classes/<name>.csv, src/<name>_000000.jpg.")] = "synth",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a previous 'os2d synth' output in OUT (removes only the files "
                            "its synth_config.json lists).")] = False,
    progress: Annotated[Optional[bool], typer.Option(
        "--progress/--no-progress", show_default=False,
        help="Progress bar (default: on when stderr is a terminal).")] = None,
    threads: Annotated[Optional[str], typer.Option(
        "--threads", help="CPU threads of OpenCV and torch: a number, or auto (the idle cores; docs/speed.md).")] = None,
) -> None:
    import cv2

    from os2d.inference.threads import parse_threads, set_threads
    from os2d.synth import SynthConfig, generate_dataset

    cv2.setNumThreads(set_threads(parse_threads(threads)))

    config = SynthConfig(
        num_scenes=num_scenes, seed=seed, min_objects=min_objects, max_objects=max_objects,
        scene_size=scene_size, object_size=(object_min, object_max), min_box_size=min_box_size,
        max_iou=max_iou, mask=mask.value, rotation_max_deg=rotation_max_deg,
        occlusion_prob=occlusion_prob, max_occlusion=max_occlusion,
        difficult_occlusion=difficult_occlusion, split=split, name=name, layout=layout.value,
    )
    show = sys.stderr.isatty() if progress is None else progress
    from tqdm import tqdm

    bars: List[tqdm] = []

    def step(n: int) -> None:  # the bar appears once inputs are checked and writing starts
        if not bars:
            bars.append(tqdm(total=num_scenes, unit="scene", desc="synth", disable=not show, file=sys.stderr))
        bars[0].update(n)

    try:
        summary = generate_dataset(list(classes or []) + list(more_classes or []), backgrounds, out, config,
                                   overwrite=overwrite, progress=step, class_table=class_table)
    finally:
        for bar in bars:
            bar.close()
    typer.echo(f"wrote {summary.num_scenes} scenes, {summary.num_boxes} boxes "
               f"({summary.num_difficult} difficult), {summary.num_classes} classes to {summary.out} "
               f"({summary.csv_path.relative_to(summary.out)})")


def register(app: typer.Typer) -> None:
    """Add ``os2d synth`` to the ``os2d`` app."""
    app.command("synth", help=HELP, short_help=SHORT_HELP)(synth)
