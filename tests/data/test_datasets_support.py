"""Builders of tiny datasets in the OS2D CSV layout, shared by the dataset tests (no tests here)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

from PIL import Image

HEADER = "gtbboxid,classid,imageid,imagefilename,classfilename,difficult,lx,ty,rx,by,split,classname"


def write_image(path: Path, size: Tuple[int, int], color=(120, 60, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def make_os2d_dataset(
    root: Path, rows: Iterable[str], *, header: str = HEADER, csv_name: str = "toy.csv",
    scenes: Optional[Dict[str, Tuple[int, int]]] = None, class_files: Sequence[str] = ("c0.jpg", "c1.jpg"),
    scene_dir: str = "src",
) -> Path:
    """Write ``root/classes/<csv_name>``, class images and scenes; return the CSV path."""
    scenes = {"a.jpg": (40, 20), "b.jpg": (30, 30)} if scenes is None else scenes
    for name, size in scenes.items():
        write_image(root / scene_dir / name, size)
    for name in class_files:
        write_image(root / "classes" / "images" / name, (8, 8))
    csv_path = root / "classes" / csv_name
    csv_path.write_text("\n".join([header, *rows]) + "\n")
    return csv_path


TOY_ROWS = [
    "0,0,10,a.jpg,c0.jpg,0,0.25,0.5,0.5,1.0,train,cat",
    "1,1,10,a.jpg,c1.jpg,1,0.0,0.0,0.1,0.1,val,dog",
    "2,0,11,b.jpg,c0.jpg,0,0.1,0.2,0.3,0.4,val,cat",
]
