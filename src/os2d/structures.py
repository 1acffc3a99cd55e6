"""Typed detection results."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch


@dataclass
class Detections:
    """Detections in one scene image.

    Attributes:
        boxes: ``Tensor[N, 4]`` float, xyxy in pixels of the original image.
        scores: ``Tensor[N]`` float, higher is better (OS2D scores lie in [-1, 1]).
        labels: ``Tensor[N]`` int64, index into ``class_names``.
        class_names: names of all classes that were searched for.
        image_size: (width, height) of the original image.
        image_name: file name of the scene image, used in JSON output.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    class_names: List[str]
    image_size: tuple = (0, 0)
    image_name: str = ""
    extra: Dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        assert self.boxes.shape == (n, 4), self.boxes.shape
        assert self.scores.shape == (n,) and self.labels.shape == (n,)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def names(self) -> List[str]:
        """Class name of each detection."""
        return [self.class_names[i] for i in self.labels.tolist()]

    @classmethod
    def empty(cls, class_names: List[str], image_size: tuple = (0, 0), image_name: str = "") -> "Detections":
        return cls(
            boxes=torch.zeros(0, 4),
            scores=torch.zeros(0),
            labels=torch.zeros(0, dtype=torch.int64),
            class_names=list(class_names),
            image_size=image_size,
            image_name=image_name,
        )

    def sorted(self) -> "Detections":
        """The same detections in decreasing score order."""
        order = torch.argsort(self.scores, descending=True, stable=True)
        return Detections(
            self.boxes[order], self.scores[order], self.labels[order], self.class_names,
            self.image_size, self.image_name, {k: v[order] for k, v in self.extra.items()},
        )

    def filter(self, keep: torch.Tensor) -> "Detections":
        """Subset by boolean mask or index tensor."""
        return Detections(
            self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names,
            self.image_size, self.image_name, {k: v[keep] for k, v in self.extra.items()},
        )

    def to_records(self, image_name: Optional[str] = None) -> List[dict]:
        """COCO-style result records: ``{"image", "class", "score", "bbox": [x1, y1, x2, y2]}``."""
        name = self.image_name if image_name is None else image_name
        return [
            {"image": name, "class": self.class_names[int(lab)], "score": float(score),
             "bbox": [float(v) for v in box]}
            for box, score, lab in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist())
        ]
