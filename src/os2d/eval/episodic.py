"""Episodic AP (OS2D paper, appendix D; the RepMet ImageNet protocol).

An episode is a small set of classes evaluated on a set of images. Inside an episode, ground
truth and detections of other classes are dropped, the detections of all episode classes are
ranked together in one list, each detection is matched within its own class with the VOC rule
of :mod:`os2d.eval.voc` (argmax-IoU GT, IoU >= ``iou_thresh``, ``+1`` pixel convention, a
taken GT makes the detection a false positive, difficult GT ignored), and the AP of that joint
list is the episode's AP. This equals ``ap_joint_classes`` of :func:`os2d.eval.voc.voc_evaluation`
on the episode, which is what the reference reports for its ImageNet episodes. The overall score
is the mean over episodes; episodes without any non-difficult GT have AP NaN and are skipped.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from os2d.errors import InvalidInputError
from os2d.eval.voc import ImageGT, ImagePred, voc_evaluation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Episode:
    """Classes (label ids) of one episode and the images (indices) it uses; ``None`` = all."""

    classes: Tuple[int, ...]
    images: Optional[Tuple[int, ...]] = None


@dataclass
class EpisodicResult:
    """Per-episode joint AP and per-episode mAP (classes averaged), plus their means."""

    ap_per_episode: np.ndarray
    map_per_episode: np.ndarray
    mean_ap: float
    mean_map: float

    def to_dict(self) -> dict:
        def clean(v):
            return None if np.isnan(v) else float(v)

        return {
            "episodic_ap": clean(self.mean_ap), "episodic_map": clean(self.mean_map),
            "ap_per_episode": [clean(v) for v in self.ap_per_episode],
            "map_per_episode": [clean(v) for v in self.map_per_episode],
        }


def restrict_to_classes(gt: ImageGT, pred: ImagePred, classes: Sequence[int]) -> Tuple[ImageGT, ImagePred]:
    """Keep only boxes and detections whose label is in ``classes``."""
    keep_gt = np.isin(gt.labels, classes)
    keep_pred = np.isin(pred.labels, classes)
    return (
        ImageGT(gt.boxes[keep_gt], gt.labels[keep_gt], gt.difficult[keep_gt], gt.image_size),
        ImagePred(pred.boxes[keep_pred], pred.labels[keep_pred], pred.scores[keep_pred], pred.image_size),
    )


def _episode_images(episode: Episode, num_images: int, index: int) -> Sequence[int]:
    if not episode.classes:
        raise InvalidInputError(f"episode {index} has no classes")
    if episode.images is None:
        return range(num_images)
    bad = [i for i in episode.images if not 0 <= i < num_images]
    if bad:
        raise InvalidInputError(f"episode {index}: image indices {bad} out of range for {num_images} images")
    return episode.images


def episodic_ap(
    gt: Sequence[ImageGT], preds: Sequence[ImagePred], episodes: Sequence[Episode], *,
    iou_thresh: float = 0.5, use_07_metric: bool = False,
) -> EpisodicResult:
    """Joint-class AP of every episode and the mean over episodes.

    Args:
        gt: one :class:`ImageGT` per image.
        preds: one :class:`ImagePred` per image, in the same order.
        episodes: the episodes; each lists its class ids and (optionally) image indices.
    """
    if len(gt) != len(preds):
        raise InvalidInputError(f"got {len(gt)} ground-truth images but {len(preds)} prediction entries")
    if not episodes:
        raise InvalidInputError("no episodes given")
    aps, maps = [], []
    for index, episode in enumerate(episodes):
        images = _episode_images(episode, len(gt), index)
        pairs = [restrict_to_classes(gt[i], preds[i], episode.classes) for i in images]
        result = voc_evaluation(
            [p[0] for p in pairs], [p[1] for p in pairs], iou_thresh=iou_thresh,
            use_07_metric=use_07_metric, num_classes=max(episode.classes) + 1,
        )
        aps.append(result.ap_joint_classes)
        maps.append(result.map)
    aps_arr, maps_arr = np.array(aps, dtype=np.float64), np.array(maps, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return EpisodicResult(aps_arr, maps_arr, float(np.nanmean(aps_arr)), float(np.nanmean(maps_arr)))
