"""Exporting a model for use without PyTorch: three ONNX graphs and ``export.json``.

>>> from os2d.export import export_model
>>> export_model("default", "exported/")          # os2d export --format onnx --out exported/

See docs/export.md for running detection from the exported files with onnxruntime alone.
"""
from os2d.export.exporter import FORMATS, ONNX_FILES, check_format, export_model, export_onnx, read_manifest
from os2d.export.manifest import MANIFEST_FILE, ExportManifest
from os2d.export.onnx_export import CLASS_FILE, HEAD_FILE, OPSET, SCENE_FILE

__all__ = ["CLASS_FILE", "ExportManifest", "FORMATS", "HEAD_FILE", "MANIFEST_FILE", "ONNX_FILES", "OPSET",
           "SCENE_FILE", "check_format", "export_model", "export_onnx", "read_manifest"]
