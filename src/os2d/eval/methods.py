"""One interface over every detection method of the registry (:mod:`os2d.inference.registry`).

:func:`build_method` turns a method name plus settings into a :class:`MethodRunner` with
``prepare_classes(mapping) -> bank`` (class features, computed once per dataset) and
``detect(image, bank, image_name=...) -> Detections``. ``os2d evaluate``, ``os2d detect`` and the
benchmark scripts all go through it, so a method is configured the same way everywhere.

* ``exact``, ``fast``, ``sliding-window-square``, ``sliding-window-ar`` (``os2d`` is an alias of
  ``exact``): :class:`os2d.detector.Detector` with the given model and settings (the baselines share
  the model's feature extractor).
* ``sift``: :class:`os2d.baselines.sift.SiftDetector`. It has no model and no image pyramid (SIFT
  is scale-invariant by construction), so a ``model`` other than ``default`` and the pyramid /
  class-image settings are refused. ``nms_iou``, ``score_threshold`` and ``max_detections`` apply;
  its default score threshold is ``-inf`` (the detector already requires RANSAC inliers).

:func:`suggest_base_size` estimates the paper's "dataset scale" (the pyramid's base size) from
the ground-truth boxes of a dataset.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch

from os2d.detector import Detector
from os2d.errors import InvalidInputError, InvalidTypeError
from os2d.inference.pyramid import target_scales
from os2d.inference.registry import METHODS, get_method
from os2d.inference.settings import DetectSettings
from os2d.structures import Detections

logger = logging.getLogger(__name__)

#: Every method name accepted by :func:`build_method` (``os2d`` = ``exact``).
ALL_METHODS = ("os2d",) + tuple(METHODS)

#: Settings every method understands; the others apply to the OS2D family only.
COMMON_SETTINGS = ("nms_iou", "score_threshold", "max_detections")

#: Settings used by evaluation unless the user overrides them: keep (almost) every detection.
EVAL_SETTINGS = {"score_threshold": float("-inf"), "max_detections": 300}


@dataclass
class MethodRunner:
    """A configured detection method.

    Attributes:
        method: the registry name.
        model: the ``--model`` value (``None`` for SIFT).
        detector: the underlying :class:`Detector` or :class:`SiftDetector`.
        score_threshold, max_detections: post-filter applied to SIFT outputs (the OS2D detector
            applies its own).
    """

    method: str
    model: Optional[str]
    detector: Any
    score_threshold: float = float("-inf")
    max_detections: Optional[int] = None

    def prepare_classes(self, classes: Mapping[str, Any]):
        """Class features of ``{name: image or [images]}``, computed once and reused over scenes."""
        return self.detector.prepare_classes(classes)

    def detect(self, image, bank, *, image_name: Optional[str] = None, on_level=None) -> Detections:
        """Detections in one scene (boxes in original pixels, sorted by decreasing score)."""
        if self.method != "sift":
            return self.detector.detect(image, bank, image_name=image_name, on_level=on_level)
        if image_name is None:
            image_name = Path(image).name if isinstance(image, (str, Path)) else "image_0"
        dets = self.detector.detect(image, bank, image_name=image_name).sorted()
        dets = dets.filter(dets.scores > self.score_threshold)
        if self.max_detections is not None and len(dets) > self.max_detections:
            dets = dets.filter(torch.arange(self.max_detections))
        return dets

    def detect_fn(self, bank) -> Callable:
        """``path -> Detections`` with the class bank bound (for :func:`run_detector_on_dataset`)."""
        return lambda path: self.detect(path, bank)

    def describe(self, image_size=None) -> Dict[str, Any]:
        """JSON-ready description of the effective settings (for result files)."""
        if self.method == "sift":
            det = self.detector
            params = {k: getattr(det, k) for k in (
                "ratio", "min_inliers", "ransac_reproj_threshold", "max_instances", "max_side",
                "class_max_side", "nfeatures", "contrast_threshold", "edge_threshold", "matcher",
                "nms_iou", "score_scale", "max_distortion", "min_box_side", "max_area_ratio")}
            params["score_threshold"] = _json_float(self.score_threshold)
            params["max_detections"] = self.max_detections
            return {"method": "sift", "model": None, "settings": params}
        settings = self.detector.settings.to_json()
        if image_size is not None or self.detector.settings.pyramid_rule == "paper" or settings["scales"]:
            w, h = image_size if image_size is not None else (1, 1)
            settings["level_scales"] = target_scales(w, h, self.detector.settings,
                                                     anchor=self.detector.model.head.anchor_size)
        else:
            settings["level_scales"] = "auto (per image)"
        return {"method": self.method, "model": self.model, "model_description": self.detector.config.description,
                "model_identity": self.detector.model_identity, "backbone": self.detector.config.backbone,
                "device": str(self.detector.device), "settings": settings}


def _json_float(value: float):
    """``-inf`` / ``inf`` as strings (JSON has no infinities)."""
    value = float(value)
    return value if math.isfinite(value) else ("-inf" if value < 0 else "inf")


def check_method(method: str) -> str:
    """The registry name of ``method`` (``os2d`` -> ``exact``), else an error listing the methods."""
    if method == "os2d":
        return "exact"
    if method not in METHODS:
        raise InvalidInputError(f"unknown method {method!r}; expected one of {list(ALL_METHODS)}")
    return method


def build_method(method: str = "exact", *, model: str = "default", device: str = "cpu",
                 detector: Optional[Detector] = None, **settings) -> MethodRunner:
    """A :class:`MethodRunner` for ``method``.

    Args:
        method: a registry name (or ``os2d`` = ``exact``).
        model: built-in model name or checkpoint path (OS2D family only).
        device: torch device (OS2D family only; SIFT runs on the CPU).
        detector: an already loaded :class:`Detector` to reuse (its weights; settings are replaced).
        settings: :class:`DetectSettings` fields; ``None`` means "the default".

    Raises:
        InvalidInputError: unknown method, or a setting that does not apply to SIFT.
        InvalidTypeError: unknown setting name.
    """
    name = check_method(method)
    unknown = sorted(set(settings) - set(DetectSettings.model_fields))
    if unknown:
        raise InvalidTypeError(f"unknown detector settings {unknown}; known: {sorted(DetectSettings.model_fields)}")
    if not get_method(name).uses_model:
        return _build_sift(model=model, **settings)
    settings = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items() if v is not None}
    if detector is not None:
        det = detector.with_settings(method=name, **settings)
    else:
        det = Detector.load(model, device=device, method=name, **settings)
    return MethodRunner(method=name, model=str(model), detector=det)


def _is_default(name: str, value) -> bool:
    if value is None or (isinstance(value, (tuple, list)) and len(value) == 0):
        return True
    return name in ("resize_rule", "interpolation", "threads") and value == getattr(DetectSettings(), name, None)


def _build_sift(*, model: str, **settings) -> MethodRunner:
    from os2d.baselines.sift import SiftDetector

    if str(model) != "default":
        raise InvalidInputError(f"method 'sift' uses no model; got model {model!r}")
    given = [name for name in settings if name not in COMMON_SETTINGS and not _is_default(name, settings[name])]
    if given:
        raise InvalidInputError(f"settings {sorted(given)} do not apply to method 'sift' (no image pyramid, no "
                                f"learned features); use them with the OS2D methods")
    nms_iou = settings.get("nms_iou")
    max_dets = settings.get("max_detections")
    threshold = settings.get("score_threshold")
    if max_dets is not None and max_dets < 1:
        raise InvalidInputError(f"max detections must be at least 1, got {max_dets}")
    if threshold is not None and math.isnan(threshold):
        raise InvalidInputError("score threshold must be a number, got nan")
    sift = SiftDetector(nms_iou=nms_iou) if nms_iou is not None else SiftDetector()
    return MethodRunner(method="sift", model=None, detector=sift,
                        score_threshold=float("-inf") if threshold is None else float(threshold),
                        max_detections=max_dets)


def suggest_base_size(dataset, *, object_size: float = 240.0, multiple: int = 10) -> int:
    """The pyramid base size that makes an average object ``object_size`` px at level 1.

    The paper picks a per-dataset scale such that objects are about as large as the class
    images (240 px) at the pyramid's level 1. Here the average object size is the mean over all
    non-difficult boxes of ``sqrt(box area) / longer image side``; the result is
    ``object_size / mean``, rounded to a multiple of ``multiple`` px.
    """
    rel = []
    for rec in dataset.images:
        if rec.size is None or len(rec) == 0:
            continue
        boxes = rec.boxes[~rec.difficult]
        side = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
        rel.extend((side / float(max(rec.size))).tolist())
    rel = [r for r in rel if r > 0]
    if not rel:
        raise InvalidInputError(f"dataset {dataset.name!r} has no usable boxes to estimate an object size from")
    base = object_size / float(np.mean(rel))
    return int(max(multiple, round(base / multiple) * multiple))
