"""Checking an export: the packages it needs, and that onnxruntime reproduces PyTorch.

:func:`verify_graphs` runs the written graphs on deterministic inputs at sizes other than the one
the exporter traced (so a size baked into a graph shows) and compares them with the model. A
mismatch is a bug of the exporter or of os2d (never of the user's input): it raises
``RuntimeError`` and nothing is published.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from os2d.errors import InvalidInputError
from os2d.export.onnx_export import CLASS_FILE, HEAD_FILE, SCENE_FILE
from os2d.model.os2d import OS2DModel

#: What :func:`verify_graphs` accepts: scores and features absolute, box pixels relative (with an
#: absolute floor of 1e-3 px for coordinates near 0).
SCORE_ATOL = 1e-4
FEATURE_ATOL = 1e-4
BOX_RTOL = 1e-4
BOX_ATOL_PX = 1e-3
#: (height, width) of the scene and class images of the check (not the traced 320 x 480).
CHECK_SCENE_SIZES: Tuple[Tuple[int, int], ...] = ((200, 296), (257, 161))
CHECK_CLASS_SIZE = (144, 208)
_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def require_packages() -> None:
    """Refuse to start an export when a package it needs is not installed (one clear line)."""
    missing = [name for name in _PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise InvalidInputError(f"ONNX export needs the packages {', '.join(missing)}, which are not installed: "
                                f"pip install 'os2d[export]' (or pip install {' '.join(missing)})")


def sessions(folder: Path, files: Sequence[str]) -> Dict[str, "object"]:
    """onnxruntime sessions of ``folder/file`` (CPU, one thread), by file name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return {f: ort.InferenceSession(str(folder / f), options, providers=["CPUExecutionProvider"]) for f in files}


def _pixels(height: int, width: int, seed: int) -> torch.Tensor:
    """Smooth deterministic test pixels ``Tensor[1, 3, height, width]`` (normalised-pixel range)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=gen) * 4.0 - 2.0
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def _check(name: str, got: np.ndarray, want: torch.Tensor, *, rtol: float, atol: float) -> None:
    want_np = want.numpy()
    if got.shape != want_np.shape or not np.allclose(got, want_np, rtol=rtol, atol=atol):
        diff = np.abs(got - want_np).max() if got.shape == want_np.shape else float("nan")
        raise RuntimeError(f"exported output {name!r} differs from PyTorch: shape {got.shape} vs {want_np.shape}, "
                           f"max abs diff {diff:.3g} (rtol {rtol}, atol {atol}); this is a bug, please report it")


@torch.no_grad()
def verify_graphs(model: OS2DModel, folder: Path) -> None:
    """Run the three graphs in ``folder`` with onnxruntime and compare them with ``model``."""
    run = sessions(folder, (SCENE_FILE, CLASS_FILE, HEAD_FILE))
    class_px = _pixels(*CHECK_CLASS_SIZE, seed=1)
    class_fm = model.class_features([class_px[0], class_px[0].flip(-1)])
    got_class = np.concatenate([run[CLASS_FILE].run(None, {"pixels": px[None].numpy()})[0]
                                for px in (class_px[0], class_px[0].flip(-1))])
    _check("class_features", got_class, class_fm, rtol=0.0, atol=FEATURE_ATOL)
    for seed, (height, width) in enumerate(CHECK_SCENE_SIZES):
        pixels = _pixels(height, width, seed=seed + 2)
        scene_fm = model.scene_features(pixels)
        got_scene = run[SCENE_FILE].run(None, {"pixels": pixels.numpy()})[0]
        _check("features", got_scene, scene_fm, rtol=0.0, atol=FEATURE_ATOL)
        out = model.head(scene_fm, class_fm)
        scores, boxes, corners = run[HEAD_FILE].run(
            None, {"scene_features": scene_fm.numpy(), "class_features": class_fm.numpy()})
        _check("scores", scores, out.scores, rtol=0.0, atol=SCORE_ATOL)
        _check("boxes", boxes, out.boxes, rtol=BOX_RTOL, atol=BOX_ATOL_PX)
        _check("corners", corners, out.corners, rtol=BOX_RTOL, atol=BOX_ATOL_PX)
