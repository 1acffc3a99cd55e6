"""One interface over every detection method: OS2D, its sliding-window baselines and SIFT.

:func:`build_method` turns a ``--method`` name plus settings into a :class:`MethodRunner` with
``prepare_classes(mapping) -> bank`` (class features, computed once per dataset) and
``detect(image, bank, image_name=...) -> Detections``. ``os2d evaluate``, ``os2d detect`` and the
benchmark script all go through it, so a method is configured the same way everywhere.

* ``os2d``, ``sliding-window-square``, ``sliding-window-ar``: :class:`os2d.detector.Detector`
  with the given model and pyramid settings (the baselines share the model's feature extractor).
* ``sift``: :class:`os2d.baselines.sift.SiftDetector`. It has no model and no image pyramid
  (SIFT is scale-invariant by construction), so ``model`` other than ``default`` and the pyramid /
  class-image settings (``scales``, ``base_size``, ``class_size``, ``augment``, a non-default
  ``resize_rule`` / ``interpolation``) are refused with a ``ValueError``. ``nms_iou``,
  ``score_threshold`` and ``max_detections`` apply to it as well; its default score threshold is
  ``-inf`` (the detector already requires ``min_inliers`` RANSAC inliers).

:func:`suggest_base_size` estimates the paper's "dataset scale" (the pyramid's base size) from
the ground-truth boxes of a dataset.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch

from os2d.detector import METHODS as OS2D_METHODS
from os2d.detector import Detector, DetectSettings
from os2d.errors import InvalidInputError, InvalidTypeError
from os2d.structures import Detections

logger = logging.getLogger(__name__)

#: Every method name accepted by ``--method``.
ALL_METHODS = tuple(OS2D_METHODS) + ("sift",)

#: Settings of :class:`os2d.detector.DetectSettings` that only make sense for the OS2D family.
OS2D_ONLY_SETTINGS = ("scales", "base_size", "pyramid", "class_size", "augment", "resize_rule",
                      "interpolation", "class_batch")

#: Settings every method understands.
COMMON_SETTINGS = ("nms_iou", "score_threshold", "max_detections")

#: Settings used by evaluation unless the user overrides them: keep (almost) every detection.
EVAL_SETTINGS = {"score_threshold": float("-inf"), "max_detections": 300}


@dataclass
class MethodRunner:
    """A configured detection method.

    Attributes:
        method: the method name (one of :data:`ALL_METHODS`).
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

    def detect(self, image, bank, *, image_name: Optional[str] = None) -> Detections:
        """Detections in one scene (boxes in original pixels, sorted by decreasing score)."""
        if self.method != "sift":
            return self.detector.detect(image, bank, image_name=image_name)
        dets = self.detector.detect(image, bank, image_name=image_name or "").sorted()
        keep = dets.scores > self.score_threshold
        dets = dets.filter(keep)
        if self.max_detections is not None and len(dets) > self.max_detections:
            dets = dets.filter(torch.arange(self.max_detections))
        return dets

    def detect_fn(self, bank) -> Callable:
        """``path -> Detections`` with the class bank bound (for :func:`run_detector_on_dataset`)."""
        return lambda path: self.detect(path, bank)

    def describe(self) -> Dict[str, Any]:
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
        settings = asdict(self.detector.settings)
        settings["score_threshold"] = _json_float(settings["score_threshold"])
        settings["pyramid"] = list(settings["pyramid"])
        settings["augment"] = list(settings["augment"])
        settings["level_scales"] = effective_scales(self.detector.settings)
        return {"method": self.method, "model": self.model,
                "model_description": self.detector.config.description,
                "backbone": self.detector.config.backbone, "device": str(self.detector.device),
                "settings": settings}


def _json_float(value: float):
    """``-inf`` / ``inf`` as strings (JSON has no infinities)."""
    value = float(value)
    return value if math.isfinite(value) else ("-inf" if value < 0 else "inf")


def effective_scales(settings: DetectSettings) -> list:
    """The pyramid levels actually used: ``scales`` or ``pyramid x base_size``."""
    if settings.scales is not None:
        return [float(s) for s in settings.scales]
    return [float(f) * settings.base_size for f in settings.pyramid]


def check_method(method: str) -> str:
    """``method`` if known, else ``ValueError`` listing the known methods."""
    if method not in ALL_METHODS:
        raise InvalidInputError(f"unknown method {method!r}; expected one of {list(ALL_METHODS)}")
    return method


def build_method(method: str = "os2d", *, model: str = "default", device: str = "cpu",
                 detector: Optional[Detector] = None, **settings) -> MethodRunner:
    """A :class:`MethodRunner` for ``method``.

    Args:
        method: one of :data:`ALL_METHODS`.
        model: built-in model name or checkpoint path (OS2D family only).
        device: torch device (OS2D family only; SIFT runs on the CPU).
        detector: an already loaded :class:`Detector` to reuse (its weights; settings are replaced).
        settings: :class:`os2d.detector.DetectSettings` fields; ``None`` means "the default".

    Raises:
        ValueError: unknown method, or a setting that does not apply to SIFT.
        TypeError: unknown setting name.
    """
    check_method(method)
    known = {f for f in DetectSettings.__dataclass_fields__}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InvalidTypeError(f"unknown detector settings {unknown}; known: {sorted(known)}")
    if method == "sift":
        return _build_sift(model=model, **settings)
    settings = {k: v for k, v in settings.items() if v is not None}
    if "augment" in settings:
        settings["augment"] = tuple(settings["augment"])
    if detector is not None:
        det = detector.with_settings(method=method, **settings)
    else:
        det = Detector.load(model, device=device, method=method, **settings)
    return MethodRunner(method=method, model=str(model), detector=det)


def _is_default(name: str, value) -> bool:
    if value is None or (isinstance(value, (tuple, list)) and len(value) == 0):
        return True
    defaults = DetectSettings()
    return name in ("resize_rule", "interpolation") and value == getattr(defaults, name)


def _build_sift(*, model: str, **settings) -> MethodRunner:
    from os2d.baselines.sift import SiftDetector

    if str(model) != "default":
        raise InvalidInputError(f"method 'sift' uses no model; got model {model!r}")
    given = [name for name in OS2D_ONLY_SETTINGS if not _is_default(name, settings.get(name))]
    if given:
        raise InvalidInputError(f"settings {given} do not apply to method 'sift' (no image pyramid, no "
                         f"learned features); use them with {list(OS2D_METHODS)}")
    nms_iou = settings.get("nms_iou")
    max_dets = settings.get("max_detections")
    threshold = settings.get("score_threshold")
    if max_dets is not None and max_dets < 1:
        raise InvalidInputError(f"max detections must be at least 1, got {max_dets}")
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

