"""From per-level raw outputs to final detections: decode, clip, rescale, per-class NMS."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torchvision.ops import nms

from os2d.ops.boxes import clip_boxes, decode_boxes, nonempty


@dataclass
class LevelOutput:
    """Raw outputs of one pyramid level for K class entries and N = H*W anchors.

    Attributes:
        codes: ``Tensor[K, N, 4]`` box encodings relative to ``anchors``.
        scores: ``Tensor[K, N]`` recognition scores.
        anchors: ``Tensor[N, 4]`` xyxy in this level's pixels.
        image_size: (width, height) of this level's network input.
        scale: (sx, sy) multiplying level pixels into output pixels.
        corners: optional ``Tensor[K, N, 4, 2]`` transform corners in level pixels.
    """

    codes: torch.Tensor
    scores: torch.Tensor
    anchors: torch.Tensor
    image_size: Tuple[int, int]
    scale: Tuple[float, float] = (1.0, 1.0)
    corners: Optional[torch.Tensor] = None


@dataclass
class ClassDetections:
    """Detections of one class (after NMS, sorted by decreasing score)."""

    boxes: torch.Tensor  # [N, 4]
    scores: torch.Tensor  # [N]
    anchors: torch.Tensor  # [N, 4]
    corners: torch.Tensor  # [N, 4, 2] (empty when not given)


def _level_candidates(level: LevelOutput, entry: int, score_threshold: float):
    """Decoded, clipped, thresholded boxes of one class entry at one level, in output pixels."""
    boxes = decode_boxes(level.codes[entry], level.anchors)
    boxes = clip_boxes(boxes, width=level.image_size[0], height=level.image_size[1])
    scores = level.scores[entry].float()
    keep = (scores > score_threshold) & nonempty(boxes)
    sx, sy = level.scale
    scale = boxes.new_tensor([sx, sy, sx, sy])
    corners = level.corners[entry][keep] * boxes.new_tensor([sx, sy]) if level.corners is not None else None
    return boxes[keep] * scale, scores[keep], level.anchors[keep].to(boxes.dtype) * scale, corners


def detect_per_class(levels: Sequence[LevelOutput], entry_labels: Sequence[int], *, num_labels: int,
                     score_threshold: float = float("-inf"), nms_iou: float = 0.3) -> List[ClassDetections]:
    """Merge all levels and all class entries with the same label, then NMS per label.

    Args:
        levels: raw outputs per pyramid level (same K class entries in each).
        entry_labels: label of each of the K class entries (several entries may share a label:
            several class images, or rotated/flipped copies of one).
        num_labels: number of distinct labels; the result has one item per label.
    """
    results = []
    for label in range(num_labels):
        parts = [
            _level_candidates(level, entry, score_threshold)
            for entry, lab in enumerate(entry_labels) if lab == label
            for level in levels
        ]
        results.append(_nms_merge(parts, nms_iou))
    return results


def _nms_merge(parts, nms_iou: float) -> ClassDetections:
    if not parts:
        empty = torch.zeros(0, 4)
        return ClassDetections(empty, torch.zeros(0), empty, torch.zeros(0, 4, 2))
    boxes = torch.cat([p[0] for p in parts])
    scores = torch.cat([p[1] for p in parts])
    anchors = torch.cat([p[2] for p in parts])
    has_corners = all(p[3] is not None for p in parts)
    corners = torch.cat([p[3] for p in parts]) if has_corners else boxes.new_zeros(len(boxes), 4, 2)
    keep = nms(boxes, scores.to(boxes.dtype), nms_iou)  # nms needs one dtype (float64 boxes, float32 scores)
    order = torch.sort(scores[keep], descending=True, stable=True).indices
    keep = keep[order]
    return ClassDetections(boxes[keep], scores[keep], anchors[keep], corners[keep])
