"""Inference settings, validated at the edge (pydantic): every field is checked when it is set.

:class:`DetectSettings` is immutable; :meth:`DetectSettings.replace` returns a validated copy.
Errors are :class:`os2d.errors.InvalidInputError` naming the field and the value given.
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from os2d.errors import InvalidInputError, InvalidTypeError

#: The paper's pyramid: 7 levels around a base size (longer side of the scene at level 1).
PAPER_PYRAMID: Tuple[float, ...] = (0.5, 0.625, 0.8, 1.0, 1.2, 1.4, 1.6)
#: Class-image augmentations (PIL transposes) accepted by ``augment``.
AUGMENTATIONS = ("rot90", "rot180", "rot270", "flip")
#: Largest side (px) and pixel count of one pyramid level: bigger levels are refused, not computed.
MAX_LEVEL_SIDE = 4096
MAX_LEVEL_PIXELS = 16_000_000
#: Largest class-image size (``class_size``, px): h * w ~= class_size^2.
MAX_CLASS_SIZE = 1024


class CascadeSettings(BaseModel):
    """Cut-offs of the fast mode's cascade (:mod:`os2d.inference.cascade`; docs/speed.md).

    Attributes:
        candidates: per class entry, locations given to the exact head (its best coarse scores).
        max_windows: at most this many candidates per scene get the full treatment: with more than
            ``max_windows // candidates`` entries, each entry's ``probe`` best coarse locations are
            first scored by the exact head alone, and only the entries with the best of those scores
            get their ``candidates`` (every entry keeps its probe detections).
        probe: coarse locations per entry scored by the exact head when the catalog is too big for
            ``max_windows``.
        precision: dtype of the windows' correlation and TransformNet: ``"float32"``,
            ``"bfloat16"``, or ``"auto"`` = bfloat16 where the hardware multiplies it natively (CPUs
            with AMX tiles or AVX-512 BF16, CUDA GPUs with bfloat16), else float32. Scores are always resampled
            and pooled in float32.
        backbone_precision: dtype of the scene backbone in fast mode (same choices; ``auto`` =
            bfloat16 where native): ~2x faster scene features on CPUs with AVX-512 BF16; the features are
            L2-normalised and used in float32 after it. Class features are always float32.
        candidate_nms: IoU of the NMS among one entry's coarse candidates (their anchors).
        radius: the exact head runs at every location within this many cells of a candidate.
        shortlist: only the classes with the best coarse peaks go to the exact head; 0 keeps all.
        dense_locations: levels whose feature map has at most this many locations get the dense
            exact head for every entry when the catalog is within ``max_windows // candidates``
            entries (no coarse stage there: on a small map the dense head costs less than the
            windows and misses nothing); 0 turns it off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    candidates: int = Field(default=16, ge=1, le=100_000)
    max_windows: int = Field(default=1500, ge=1, le=10_000_000)
    probe: int = Field(default=1, ge=1, le=100)
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    backbone_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    candidate_nms: float = Field(default=0.5, gt=0.0, le=1.0)
    radius: int = Field(default=1, ge=0, le=7)
    shortlist: int = Field(default=0, ge=0, le=100_000)
    dense_locations: int = Field(default=512, ge=0, le=10_000_000)


class DetectSettings(BaseModel):
    """How to detect: method, pyramid, NMS, thresholds, class images (defaults come from the model).

    ``scales``: per pyramid level, the scene's longer side in pixels (``resize_rule="longer-side"``)
    or ``sqrt(h*w)`` (``"area"``, the reference demo). When ``None``, ``pyramid_rule`` decides:
    ``"paper"`` = ``pyramid`` factors times ``base_size``; ``"auto"`` = levels chosen from the
    scene's own size (:func:`os2d.inference.pyramid.auto_scales`). ``trim_class_images``: cut each
    class image's uniform margin away before its features are computed (:mod:`os2d.data.trim`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    method: str = "exact"
    scales: Optional[Tuple[float, ...]] = None
    base_size: int = Field(default=1280, ge=32, le=MAX_LEVEL_SIDE)
    pyramid: Tuple[float, ...] = PAPER_PYRAMID
    pyramid_rule: Literal["paper", "auto"] = "paper"
    pyramid_from: Literal["original", "base"] = "original"
    auto_max_upscale: float = Field(default=2.0, ge=1.0, le=8.0)
    auto_min_object: float = Field(default=0.1, gt=0.0, le=1.0)
    auto_max_object: float = Field(default=1.0, gt=0.0, le=1.0)
    auto_step: float = Field(default=1.25, gt=1.0, le=4.0)
    auto_max_side: int = Field(default=2048, ge=32, le=MAX_LEVEL_SIDE)
    resize_rule: Literal["longer-side", "area"] = "longer-side"
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    class_size: int = Field(default=240, ge=16, le=MAX_CLASS_SIZE)
    nms_iou: float = Field(default=0.3, gt=0.0, le=1.0)
    nms_mode: Literal["global", "reference"] = "global"
    score_threshold: float = 0.5
    max_detections: int = Field(default=100, ge=1, le=100_000)
    augment: Tuple[str, ...] = ()
    trim_class_images: bool = False
    class_batch: int = Field(default=4, ge=1, le=4096)
    scores: Literal["raw", "calibrated"] = "raw"
    one_label: bool = False
    one_label_iou: float = Field(default=0.5, gt=0.0, le=1.0)
    color_weight: float = Field(default=0.0, ge=0.0, le=10.0)
    cascade: CascadeSettings = CascadeSettings()

    @field_validator("scales")
    @classmethod
    def _check_scales(cls, value):
        if value is None:
            return value
        if len(value) == 0:
            raise ValueError("scales must hold at least one level")
        for s in value:
            if not math.isfinite(s) or s < 32 or s > MAX_LEVEL_SIDE:
                raise ValueError(f"every scale must be a pixel size in [32, {MAX_LEVEL_SIDE}], got {s}")
        return tuple(float(s) for s in value)

    @field_validator("pyramid")
    @classmethod
    def _check_pyramid(cls, value):
        if len(value) == 0 or any(not math.isfinite(f) or not 0.01 <= f <= 16 for f in value):
            raise ValueError(f"pyramid factors must be finite numbers in [0.01, 16], got {value}")
        return tuple(float(f) for f in value)

    @field_validator("score_threshold")
    @classmethod
    def _check_threshold(cls, value):
        if math.isnan(value) or value == math.inf:
            raise ValueError(f"score threshold must be a number or -inf, got {value}")
        return float(value)

    @field_validator("augment")
    @classmethod
    def _check_augment(cls, value):
        bad = [a for a in value if a not in AUGMENTATIONS]
        if bad:
            raise ValueError(f"unknown class-image augmentation {bad}; expected some of {list(AUGMENTATIONS)}")
        return tuple(value)

    @classmethod
    def create(cls, **fields) -> "DetectSettings":
        """Validated settings; ``None`` values are left at their defaults."""
        return _validated(cls, {k: v for k, v in fields.items() if v is not None})

    def replace(self, **fields) -> "DetectSettings":
        """A validated copy with ``fields`` changed (``None`` keeps the current value)."""
        blob = self.model_dump()
        cascade = fields.pop("cascade", None)
        unknown = sorted(set(fields) - set(blob))
        if unknown:
            raise InvalidTypeError(f"unknown detector settings {unknown}; known: {sorted(blob)}")
        blob.update({k: v for k, v in fields.items() if v is not None})
        if cascade is not None:
            blob["cascade"] = {**blob["cascade"], **(cascade if isinstance(cascade, dict) else cascade.model_dump())}
        return _validated(type(self), blob)

    def to_json(self) -> dict:
        """JSON-ready dict (``-inf`` thresholds as the string ``"-inf"``)."""
        blob = self.model_dump(mode="json")
        if not math.isfinite(self.score_threshold):
            blob["score_threshold"] = "-inf"
        return blob


def _validated(cls, blob: dict):
    known = set(cls.model_fields)
    unknown = sorted(set(blob) - known)
    if unknown:
        raise InvalidTypeError(f"unknown detector settings {unknown}; known: {sorted(known)}")
    try:
        return cls(**blob)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        given = first.get("input")
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInputError(f"invalid setting {where}={given!r}: {message}") from None
