"""os2d: one-shot object detection by matching anchor features (OS2D, ECCV 2020).

Public API::

    det = os2d.Detector.load("default")            # or "untrained", or a checkpoint path
    result = det.detect("scene.jpg", {"logo": "logo.png"})
    records = result.to_records()                   # COCO-style result dicts
"""
from os2d.data.images import load_image
from os2d.catalog import Catalog
from os2d.detector import Detector
from os2d.inference.bank import ClassBank
from os2d.inference.settings import DetectSettings
from os2d.model.checkpoint import (
    build_model,
    load_own_model,
    load_reference_model,
    save_model,
)
from os2d.model.config import ModelConfig
from os2d.structures import Detections
from os2d.zoo import BUILTIN_MODELS, load_model

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_MODELS", "Catalog", "ClassBank", "DetectSettings", "Detections", "Detector", "ModelConfig",
    "build_model", "load_image", "load_model", "load_own_model", "load_reference_model", "save_model",
    "__version__",
]
