"""``export.json``: what someone needs to run an exported model with onnxruntime alone.

The model's identity and config, the graphs' files, input and output names and shapes, the
preprocessing (resize rules, pixel normalisation) and the geometry (stride, anchor size, grid
size). See docs/export.md for how the values are used.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict

from os2d.data import trim
from os2d.data.preprocess import MIN_CLASS_IMAGE_SIDE
from os2d.export.onnx_export import MAX_IMAGE_SIDE, GraphIO
from os2d.inference.calibration import Calibrator
from os2d.inference.pyramid import MIN_LEVEL_SIDE
from os2d.model.config import ModelConfig
from os2d.model.os2d import OS2DModel

MANIFEST_FILE = "export.json"
FORMAT_NAME = "os2d-onnx-export"
FORMAT_VERSION = 1

Dimension = Union[int, str]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """A graph input or output: float32, with named dynamic axes (``"height"``, ``"K"``, ...)."""

    name: str
    shape: Tuple[Dimension, ...]
    dtype: Literal["float32"] = "float32"


class GraphSpec(_Frozen):
    """One ``.onnx`` file: its inputs, outputs and SHA-256."""

    file: str
    sha256: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]


class ClassTrim(_Frozen):
    """The trim of a class image's uniform margin (:mod:`os2d.data.trim`), done before its resize.

    The border's median colour is a margin when >= ``uniform`` of the border pixels are within
    ``tolerance`` of it (every channel); content pixels differ from it by more; the crop spans the rows
    and columns with at least ``max(1, line * side)`` content pixels; no trim when the content covers
    less than ``min_content`` of the image or the crop has a side below ``min_side``. The crop keeps a
    margin of ``keep`` times the content's width left and right (height above and below), within the image.
    """

    tolerance: int
    uniform: float
    line: float
    min_content: float
    keep: float
    min_side: int


class Preprocessing(_Frozen):
    """How images become graph inputs (the same steps as ``os2d detect``).

    8-bit RGB (EXIF orientation applied), resized with ``interpolation``; pixel values
    ``(p / pixel_divisor - pixel_mean) / pixel_std`` per channel, NCHW float32. Scenes: longer side to each
    pyramid scale, ``(int(w * s + 0.5), int(h * s + 0.5))`` with ``s = scale / max(w, h)``. Class
    images: ``h * w ~= class_size^2``, ``(int(class_size / sqrt(h / w)), int(class_size * sqrt(h / w)))``.
    Scene levels with a side below ``min_side`` are skipped (as ``os2d detect`` does); class images
    need sides of at least ``min_class_side``; no image side may exceed ``max_side``. ``class_trim``:
    how class images are trimmed first (``None``: not trimmed).
    """

    color: Literal["RGB"] = "RGB"
    pixel_divisor: float = 255.0
    pixel_mean: Tuple[float, float, float]
    pixel_std: Tuple[float, float, float]
    interpolation: Literal["bilinear"] = "bilinear"
    scene_resize: Literal["longer-side"] = "longer-side"
    class_resize: Literal["area"] = "area"
    class_size: int
    min_side: int
    max_side: int
    min_class_side: int
    class_trim: Optional[ClassTrim] = None


class Geometry(_Frozen):
    """Where each feature-map location looks: its anchor is ``anchor_size`` px wide, centred at
    ``((col + 0.5) * stride, (row + 0.5) * stride)`` network-input pixels."""

    stride: int
    anchor_size: float
    grid_size: int
    feature_channels: int
    variant: str
    use_transform: bool


class ExportManifest(_Frozen):
    """The content of ``export.json``."""

    format: Literal["os2d-onnx-export"] = FORMAT_NAME
    format_version: Literal[1] = FORMAT_VERSION
    os2d_version: str
    torch_version: str
    opset: int
    model_identity: str
    model: dict
    preprocessing: Preprocessing
    geometry: Geometry
    pyramid_scales: Tuple[float, ...]
    graphs: Dict[str, GraphSpec]
    #: the model's default threshold in the units of the head's (raw) scores; ``None`` when, with
    #: class-wise calibration, it depends on the class
    raw_score_threshold: Optional[float] = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def graph_spec(folder: Path, file: str, io: GraphIO) -> GraphSpec:
    """The :class:`GraphSpec` of ``folder/file`` with the names and shapes of ``io``."""
    def specs(items) -> Tuple[TensorSpec, ...]:
        return tuple(TensorSpec(name=name, shape=shape) for name, shape in items)

    return GraphSpec(file=file, sha256=sha256_file(folder / file), inputs=specs(io.inputs), outputs=specs(io.outputs))


def raw_score_threshold(config: ModelConfig, calibrator: Optional[Calibrator]) -> Optional[float]:
    """``config.score_threshold`` in raw units: itself for raw scores, the class-independent raw equivalent
    for calibrated scores with a global map, else ``None``."""
    if config.scores == "raw" or calibrator is None:
        return config.score_threshold
    return calibrator.global_raw_threshold(config.score_threshold)


def build_manifest(model: OS2DModel, config: ModelConfig, *, identity: str, graphs: List[GraphSpec],
                   opset: int, calibrator: Optional[Calibrator] = None) -> ExportManifest:
    """The manifest of an export of ``model`` (whose :func:`~os2d.model.identity.model_identity` is ``identity``;
    ``calibrator``: its score calibration, if any)."""
    import torch

    from os2d import __version__

    backbone, head = model.backbone, model.head
    class_trim = ClassTrim(tolerance=trim.TRIM_TOLERANCE, uniform=trim.TRIM_UNIFORM, line=trim.TRIM_LINE,
                           min_content=trim.TRIM_MIN_CONTENT, keep=trim.TRIM_KEEP,
                           min_side=MIN_CLASS_IMAGE_SIDE)
    preprocessing = Preprocessing(
        pixel_mean=tuple(backbone.pixel_mean), pixel_std=tuple(backbone.pixel_std), class_size=config.class_size,
        min_side=MIN_LEVEL_SIDE, max_side=MAX_IMAGE_SIDE, min_class_side=MIN_CLASS_IMAGE_SIDE,
        class_trim=class_trim if config.trim_class_images else None)
    geometry = Geometry(stride=head.stride, anchor_size=head.anchor_size, grid_size=head.grid_size,
                        feature_channels=backbone.out_channels, variant=head.variant,
                        use_transform=head.transform_net is not None)
    return ExportManifest(
        os2d_version=__version__, torch_version=torch.__version__, opset=opset, model_identity=identity,
        model=config.to_dict()["model"], preprocessing=preprocessing, geometry=geometry,
        pyramid_scales=tuple(round(f * config.base_size, 3) for f in config.pyramid),
        graphs={Path(g.file).stem: g for g in graphs}, raw_score_threshold=raw_score_threshold(config, calibrator))
