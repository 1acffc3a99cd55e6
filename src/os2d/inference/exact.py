"""Exact mode: the OS2D head at every location of every pyramid level, classes in chunks.

Memory is bounded by the chunk (``class_batch`` entries, whole classes): after each chunk the
candidates are reduced to each class's NMS survivors (:func:`reduce_per_class`).
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch

from os2d.inference.bank import ClassBank
from os2d.inference.candidates import Candidates, level_candidates, reduce_per_class
from os2d.inference.scene import Scene
from os2d.model.head import OS2DHead
from os2d.ops.grid import location_centers


def class_chunks(bank: ClassBank, size: int) -> Iterator[torch.Tensor]:
    """Entry indices in chunks of whole classes, each of at most ``size`` entries (or one class)."""
    chunk = []
    for label in range(len(bank)):
        entries = bank.entries_of(label).tolist()
        if chunk and len(chunk) + len(entries) > size:
            yield torch.tensor(chunk, dtype=torch.int64)
            chunk = []
        chunk.extend(entries)
    if chunk:
        yield torch.tensor(chunk, dtype=torch.int64)


@torch.no_grad()
def dense_level_candidates(head: OS2DHead, scene: Scene, level: int, features: torch.Tensor, entries: torch.Tensor,
                           *, stride: float, score_threshold) -> Candidates:
    """Candidates of ``entries`` (features ``Tensor[k, C, g, g]``) at one level, head at every location."""
    fm = scene.features(level)
    out = head(fm, features)
    k, (height, width) = features.shape[0], fm.shape[-2:]
    centers = location_centers(height, width).reshape(1, -1, 2).expand(k, -1, -1).reshape(-1, 2)
    # [k*H*W, 2]
    return level_candidates(
        scores=out.scores[0].reshape(-1), boxes=out.boxes[0].reshape(-1, 4), corners=out.corners[0].reshape(-1, 4, 2),
        centers=centers, entries=entries.repeat_interleave(height * width), level=level,
        level_size=scene.levels[level].size, scale=scene.levels[level].scale, stride=stride,
        anchor_size=head.anchor_size, score_threshold=score_threshold)


def dense_candidates(detector, scene: Scene, bank: ClassBank, entries: torch.Tensor, *, levels, threshold,
                     head: Optional[OS2DHead] = None) -> Candidates:
    """Candidates of ``entries`` at the given ``levels`` of ``scene``, head at every location (no NMS)."""
    head = detector.model.head if head is None else head
    features = bank.entry_features(entries)
    return Candidates.cat([dense_level_candidates(head, scene, level, features, entries,
                                                  stride=detector.model.backbone.stride, score_threshold=threshold)
                           for level in levels])


def exact_candidates(detector, scene: Scene, bank: ClassBank, *, head: Optional[OS2DHead] = None) -> Candidates:
    """Every class of ``bank`` at every location and level of ``scene`` (per-class NMS applied)."""
    settings, threshold = detector.settings, detector.candidate_thresholds(bank)
    return Candidates.cat([
        reduce_per_class(dense_candidates(detector, scene, bank, entries, levels=range(len(scene)), threshold=threshold,
                                          head=head), bank.entry_labels, settings)
        for entries in class_chunks(bank, settings.class_batch)])
