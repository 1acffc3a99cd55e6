"""Generators of good and bad inputs for the robustness cases (all written at test time)."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import yaml
from PIL import Image

CSV_HEADER = "imageid,imagefilename,classid,classfilename,gtbboxid,difficult,lx,ty,rx,by,split,classname\n"


class Touch:
    """Unpickling this creates ``marker`` (``Path.touch``): stands for code hidden in a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# ---------------------------------------------------------------------------------------- images
def jpeg(path: Path, size=(96, 72), seed: int = 0) -> Path:
    """A textured JPEG (so that decoding and resizing have something to do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 220, size=(6, 8, 3), dtype=np.uint8)
    Image.fromarray(base).resize(size, Image.BILINEAR).save(path, quality=90)
    return path


def packshot(path: Path, colour=(200, 30, 30)) -> Path:
    """A solid object on a white background (a class image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((60, 80, 3), 255, np.uint8)
    img[15:45, 20:60] = colour
    Image.fromarray(img).save(path)
    return path


def truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def huge_header(path: Path, side: int = 30000) -> Path:
    """A PPM whose header claims ``side`` x ``side`` pixels (a decompression bomb's size)."""
    path.write_bytes(f"P6\n{side} {side}\n255\n".encode() + bytes(64))
    return path


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def junk(path: Path, data: bytes = b"\x00not an image at all\xff" * 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def synth_inputs(folder: Path) -> None:
    """``classes/`` (2 packshots) and ``bgs/`` (2 backgrounds) for ``os2d synth``."""
    packshot(folder / "classes" / "red.png")
    packshot(folder / "classes" / "blue.png", colour=(20, 40, 200))
    jpeg(folder / "bgs" / "a.jpg", size=(320, 240), seed=1)
    jpeg(folder / "bgs" / "b.jpg", size=(300, 260), seed=2)


# ---------------------------------------------------------------------------------------- datasets
def csv_dataset(root: Path, *, rows: Optional[str] = None, encoding: str = "utf-8") -> Path:
    """A tiny OS2D-CSV dataset (2 scenes, 1 class, split train); returns the CSV path."""
    packshot(root / "classes" / "images" / "red.png")
    for i in range(2):
        jpeg(root / "src" / f"s{i}.jpg", size=(160, 120), seed=10 + i)
    body = rows if rows is not None else "".join(
        f"{i},s{i}.jpg,0,red.png,{i},0,0.2,0.2,0.6,0.7,train,red\n" for i in range(2))
    path = root / "classes" / "ds.csv"
    path.write_bytes((CSV_HEADER + body).encode(encoding))
    return path


def coco_dataset(root: Path, **image_fields: Any) -> Path:
    """A tiny COCO JSON (2 images, 1 category); ``image_fields`` go into the first image."""
    for i in range(2):
        jpeg(root / f"s{i}.jpg", size=(160, 120), seed=20 + i)
    data = {
        "images": [{"id": 1, "file_name": "s0.jpg", **image_fields}, {"id": 2, "file_name": "s1.jpg"}],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 7, "bbox": [10, 10, 40, 30]}
                        for i in range(2)],
        "categories": [{"id": 7, "name": "thing"}],
    }
    path = root / "ann.json"
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------- training
def train_config(path: Path, dataset: Path, **sections: Dict[str, Any]) -> Path:
    """A small valid training YAML for ``dataset`` (a CSV), updated section by section."""
    tree: Dict[str, Any] = {
        "data": {"train": [{"path": str(dataset), "split": "train"}]},
        "batch": {"patch_size": 128, "batch_size": 1, "class_batch": 1, "class_size": 64},
        "optim": {"iterations": 1},
        "eval": {"at_start": False, "at_end": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            tree[key].update(value)
        else:
            tree[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree))
    return path


def run_folder(folder: Path, *, checkpoint: Optional[bytes] = None) -> Path:
    """A training run folder (dataset + config.yaml) with the given ``checkpoint.pt`` bytes."""
    dataset = csv_dataset(folder / "data")
    run = folder / "run"
    train_config(run / "config.yaml", dataset)
    if checkpoint is not None:
        (run / "checkpoint.pt").write_bytes(checkpoint)
    return run


def malicious_checkpoint(marker: Path) -> bytes:
    """A ``torch.save`` file whose unpickling (``weights_only=False``) would create ``marker``."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"format": "os2d-train-checkpoint", "format_version": 2, "model": Touch(marker)}, buffer)
    return buffer.getvalue()


def zeros(*shape: int):
    import torch

    return torch.zeros(*shape)


def torch_bytes(obj: Any) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- models
class Assets:
    """Inputs that are costly to make, built once per session and copied into cases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._model: Optional[Path] = None

    @property
    def model_folder(self) -> Path:
        """A saved EfficientNet-Lite0 model (package weights, a fine-tuned last stage)."""
        if self._model is None:
            import torch

            from os2d.model.checkpoint import build_model, save_model
            from os2d.model.config import ModelConfig

            model = build_model(ModelConfig())
            with torch.no_grad():
                model.backbone.stages[4][0].expand.conv.weight.mul_(1.01)
            self._model = save_model(model, ModelConfig(), self.root / "model")
        return self._model

    def copy_model(self, target: Path, **config_changes: Any) -> Path:
        shutil.copytree(self.model_folder, target)
        if config_changes:
            blob = json.loads((target / "config.json").read_text())
            blob["model"].update(config_changes)
            (target / "config.json").write_text(json.dumps(blob))
        return target
