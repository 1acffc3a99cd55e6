"""Candidate detections of one scene, and how they become final detections.

Every method produces :class:`Candidates` (boxes already in original-image pixels, clipped,
non-empty, above the score threshold). :func:`reduce_per_class` applies the per-class NMS
(``nms_mode``: one global NMS, or the reference's chunked NMS) and keeps each class's top
``max_detections``; methods call it on chunks of classes so that memory does not grow with the
number of classes. :func:`finalize` sorts, applies the optional cross-class steps and returns
:class:`~os2d.structures.Detections`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Optional, Sequence, Tuple

import torch

from os2d.inference.settings import DetectSettings
from os2d.ops.boxes import anchor_boxes, clip_boxes, enlarge_to_min_size, nms_per_class, nonempty, reference_nms


@dataclass
class Candidates:
    """N candidate detections (original-image pixels).

    Attributes:
        boxes: ``Tensor[N, 4]`` xyxy, clipped to the image.
        scores: ``Tensor[N]`` float32.
        entries: ``Tensor[N]`` int64, class-bank entry of each candidate.
        levels: ``Tensor[N]`` int64, pyramid level.
        corners: ``Tensor[N, 4, 2]`` transformed grid corners (not clipped).
        anchors: ``Tensor[N, 4]`` the location's anchor box.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    entries: torch.Tensor
    levels: torch.Tensor
    corners: torch.Tensor
    anchors: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, index: torch.Tensor) -> "Candidates":
        return Candidates(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def empty() -> "Candidates":
        return Candidates(boxes=torch.zeros(0, 4), scores=torch.zeros(0), entries=torch.zeros(0, dtype=torch.int64),
                          levels=torch.zeros(0, dtype=torch.int64), corners=torch.zeros(0, 4, 2),
                          anchors=torch.zeros(0, 4))

    @staticmethod
    def cat(parts: Sequence["Candidates"]) -> "Candidates":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Candidates.empty()
        return Candidates(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Candidates)})


def above_threshold(scores: torch.Tensor, entries: torch.Tensor, threshold) -> torch.Tensor:
    """``Tensor[N]`` bool: scores above ``threshold`` (a number, or ``Tensor[K]`` one per class-bank entry)."""
    limit = threshold[entries] if isinstance(threshold, torch.Tensor) else threshold
    return scores.float() > limit


def level_candidates(*, scores: torch.Tensor, boxes: torch.Tensor, corners: torch.Tensor, centers: torch.Tensor,
                     entries: torch.Tensor, level: int, level_size: Tuple[int, int], scale: Tuple[float, float],
                     stride: float, anchor_size: float, score_threshold) -> Candidates:
    """Head outputs of one level -> candidates in original pixels.

    Args:
        scores: ``Tensor[L]``; boxes ``Tensor[L, 4]`` and corners ``Tensor[L, 4, 2]`` in level pixels.
        centers: ``Tensor[L, 2]`` (col, row) of each output's location.
        entries: ``Tensor[L]`` int64 class-bank entry of each output.
        level_size: (w, h) of the level's network input; scale: (sx, sy) level -> original pixels.
        score_threshold: a number, or ``Tensor[K]`` one raw threshold per class-bank entry (calibrated
            scores: see :meth:`os2d.detector.Detector.raw_thresholds`); kept: scores above it.
    """
    boxes = clip_boxes(enlarge_to_min_size(boxes.float()), width=level_size[0], height=level_size[1])
    keep = above_threshold(scores, entries, score_threshold) & nonempty(boxes)
    idx = keep.nonzero().squeeze(1)
    factor = boxes.new_tensor([scale[0], scale[1], scale[0], scale[1]])
    anchors = anchor_boxes(centers[idx].float(), stride=stride, size=anchor_size)
    return Candidates(boxes=boxes[idx] * factor, scores=scores[idx].float(), entries=entries[idx],
                      levels=torch.full((idx.numel(),), level, dtype=torch.int64),
                      corners=corners[idx].float() * factor[:2], anchors=anchors * factor)


def reference_order(cands: Candidates) -> Candidates:
    """Candidates ordered like the reference's concatenation: by entry, then level (stable)."""
    key = cands.entries * (int(cands.levels.max()) + 1 if len(cands) else 1) + cands.levels
    return cands.select(torch.sort(key, stable=True).indices)


def reduce_per_class(cands: Candidates, entry_labels: torch.Tensor, settings: DetectSettings) -> Candidates:
    """Per-class NMS (``settings.nms_mode``) and each class's best ``max_detections``, by decreasing score."""
    if len(cands) == 0:
        return cands
    labels = entry_labels[cands.entries]
    if settings.nms_mode == "reference":
        ordered = reference_order(cands)
        labels = entry_labels[ordered.entries]
        kept = []
        for label in labels.unique().tolist():
            members = (labels == label).nonzero().squeeze(1)
            keep = reference_nms(ordered.boxes[members], ordered.scores[members], iou=settings.nms_iou)
            kept.append(members[keep][:settings.max_detections])
        cands = ordered
        keep = torch.cat(kept)
    else:
        keep = nms_per_class(cands.boxes, cands.scores, labels, iou=settings.nms_iou)
        keep = _top_per_label(keep, labels[keep], settings.max_detections)
    return cands.select(keep)


def _top_per_label(keep: torch.Tensor, labels: torch.Tensor, limit: int) -> torch.Tensor:
    """The first ``limit`` of each label in ``keep`` (already by decreasing score)."""
    if keep.numel() == 0:
        return keep
    order = torch.sort(labels, stable=True)
    sorted_labels = order.values
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.arange(sorted_labels.numel()) - starts
    chosen = order.indices[rank < limit]
    return keep[torch.sort(chosen).values]


@dataclass
class Finalized:
    """Final candidates in output order and the per-candidate extras of the detections."""

    cands: Candidates
    labels: torch.Tensor
    extra: dict


def finalize(cands: Candidates, entry_labels: torch.Tensor, settings: DetectSettings,
             post: Optional[List] = None) -> Finalized:
    """Sort by decreasing score, apply the cross-class steps ``post`` (callables
    ``(cands, labels, extra) -> (cands, labels, extra)``, e.g. calibration, one label per object), keep the
    top ``max_detections``."""
    order = torch.sort(cands.scores, descending=True, stable=True).indices
    cands = cands.select(order)
    labels = entry_labels[cands.entries]
    extra: dict = {}
    for step in post or []:
        cands, labels, extra = step(cands, labels, extra)
    top = torch.arange(min(len(cands), settings.max_detections))
    return Finalized(cands=cands.select(top), labels=labels[top], extra={k: v[top] for k, v in extra.items()})
