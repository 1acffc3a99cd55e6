"""Model configuration (architecture + recommended inference settings), stored with checkpoints."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import List, Optional, Tuple

from os2d.errors import InvalidInputError

FORMAT_NAME = "os2d-model"
FORMAT_VERSION = 1

#: The paper's pyramid: 7 levels around a base size (longer side of the scene at level 1).
PAPER_PYRAMID: Tuple[float, ...] = (0.5, 0.625, 0.8, 1.0, 1.2, 1.4, 1.6)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model, plus its recommended inference defaults."""

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
    scores: str = "raw"  # "raw" cosine scores or "calibrated" (needs calibration data with the model)
    one_label: bool = False  # cross-class suppression: one label per object
    description: str = ""

    def to_dict(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": asdict(self)}

    @classmethod
    def from_dict(cls, blob: dict, *, source: str = "config") -> "ModelConfig":
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
        unknown = sorted(set(model) - known)
        if unknown:
            raise InvalidInputError(f"{source} has unknown model settings {unknown}")
        return cls(**model)
