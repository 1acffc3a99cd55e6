"""Exporting a model to a folder: check the inputs, build the graphs, write them and ``export.json``."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Optional, Tuple, Union

from os2d.errors import InvalidInputError, InvalidTypeError
from os2d.export.manifest import MANIFEST_FILE, ExportManifest, build_manifest, graph_spec
from os2d.export.onnx_export import CLASS_FILE, HEAD_FILE, OPSET, SCENE_FILE, graph_io, onnx_graphs
from os2d.export.output import check_output_folder, new_staging, publish, remove_stale_staging
from os2d.export.verify import require_packages, verify_graphs
from os2d.inference.calibration import BackgroundBank, Calibrator
from os2d.model.config import ModelConfig
from os2d.model.identity import model_identity
from os2d.model.os2d import OS2DModel

logger = logging.getLogger(__name__)

#: Export formats, by name.
FORMATS: Tuple[str, ...] = ("onnx",)
#: The files an ONNX export writes.
ONNX_FILES: Tuple[str, ...] = (SCENE_FILE, CLASS_FILE, HEAD_FILE, MANIFEST_FILE)


def check_format(fmt: object) -> str:
    """``fmt`` if it names an export format (case-insensitive), else :class:`InvalidInputError`."""
    if not isinstance(fmt, str):
        raise InvalidTypeError(f"export format must be a string, got {type(fmt).__name__}")
    name = fmt.strip().lower()
    if name not in FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r}; supported: {', '.join(FORMATS)}")
    return name


def export_model(model: Union[str, Path] = "default", out: Union[str, Path, None] = None, *, fmt: str = "onnx",
                 overwrite: bool = False) -> ExportManifest:
    """Export a model given by name or path (see :func:`os2d.zoo.load_model`) to the folder ``out``.

    The format and ``out`` are checked before the model is loaded; see :func:`export_onnx`.
    """
    from os2d.detector import model_folder
    from os2d.zoo import load_model

    check_format(fmt)
    require_packages()
    if out is None:
        raise InvalidInputError("no output folder given for the export")
    out = Path(out).expanduser()
    check_output_folder(out, files=ONNX_FILES, overwrite=overwrite)
    network, config = load_model(model)
    folder = model_folder(model)
    background = BackgroundBank.load(folder) if folder is not None else None
    return export_onnx(network, config, out, overwrite=overwrite,
                       calibrator=None if background is None else background.calibrator)


def export_onnx(model: OS2DModel, config: ModelConfig, out: Union[str, Path], *, overwrite: bool = False,
                opset: int = OPSET, calibrator: Optional[Calibrator] = None) -> ExportManifest:
    """Write ``out/{scene_features,class_features,head}.onnx`` and ``out/export.json``.

    ``calibrator`` (the model's score calibration, if any) gives the manifest the default threshold
    in the graphs' raw units (``raw_score_threshold``).

    ``out`` must be new or empty unless ``overwrite`` (then only the export's own files are
    replaced). Everything is written into a staging folder first, checked against PyTorch with
    onnxruntime (:func:`~os2d.export.verify.verify_graphs`) and moved into place at the end, so on
    any failure ``out`` is left as it was.

    Returns:
        the :class:`~os2d.export.manifest.ExportManifest` written to ``export.json``.
    """
    require_packages()
    out = Path(out).expanduser()
    check_output_folder(out, files=ONNX_FILES, overwrite=overwrite)
    remove_stale_staging(out)
    was_training = model.training
    try:
        return _export_eval(model.eval(), config, out, opset=opset, calibrator=calibrator)
    finally:
        model.train(was_training)


def _export_eval(model: OS2DModel, config: ModelConfig, out: Path, *, opset: int,
                 calibrator: Optional[Calibrator]) -> ExportManifest:
    import onnx

    identity = model_identity(model, config)
    graphs = onnx_graphs(model, opset=opset)
    io = graph_io(channels=model.backbone.out_channels, grid_size=model.head.grid_size)
    staging = new_staging(out)
    try:
        for name, proto in graphs.items():
            onnx.save_model(proto, str(staging / name))
        verify_graphs(model, staging)
        specs = [graph_spec(staging, name, io[name]) for name in graphs]
        manifest = build_manifest(model, config, identity=identity, graphs=specs, opset=opset, calibrator=calibrator)
        text = json.dumps(manifest.model_dump(mode="json"), indent=1)
        (staging / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
        publish(staging, out, last=MANIFEST_FILE)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s to %s", identity, out)
    return manifest


def read_manifest(folder: Union[str, Path]) -> ExportManifest:
    """The :class:`ExportManifest` of an export folder."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise InvalidInputError(f"not an os2d export folder (no {MANIFEST_FILE}): {folder}")
    try:
        return ExportManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InvalidInputError(f"{path} is not a valid os2d export manifest: {str(err).splitlines()[0]}") from None
