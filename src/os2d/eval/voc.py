"""Pascal VOC average precision, matching the OS2D reference evaluation.

Reproduces ``os2d.data.voc_eval.do_voc_evaluation`` of the reference OS2D code (itself taken
from maskrcnn-benchmark / chainercv), including its conventions:

* predictions given at another image size than the ground truth are first rescaled to the GT
  size with separate x/y ratios (in float32, as the reference ``BoxList.resize``);
* ``+1`` is added to ``x2, y2`` of every box before the IoU (old integer-pixel VOC convention);
* in each image, the detections of a class are processed in decreasing score order and each is
  assigned to its argmax-IoU ground-truth box; if that box is already taken the detection is a
  false positive even when another overlapping box is free; matches to difficult boxes are
  ignored (neither TP nor FP);
* classes without non-difficult GT get AP NaN and are left out of the mAP (``nanmean``);
  classes with GT but no detections get AP 0;
* AP is the area under the precision/recall curve with monotone precision (all points), or
  the 11-point VOC2007 variant with ``use_07_metric=True``.

``ap_joint_classes`` is the AP of one list holding the detections of all classes (each still
matched within its own class), which is the episodic metric of the reference ImageNet
evaluation. Ties between equal scores are broken like the reference (reversed ``np.argsort``).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import box_iou

from os2d.errors import InvalidInputError, InvalidTypeError

logger = logging.getLogger(__name__)

Size = Optional[Tuple[float, float]]


@dataclass
class ImageGT:
    """Ground truth of one image.

    Attributes:
        boxes: ``[N, 4]`` xyxy in pixels.
        labels: ``[N]`` int class indices.
        difficult: ``[N]`` bool; ``None`` means no box is difficult.
        image_size: (width, height) the boxes refer to; needed only to rescale predictions.
    """

    boxes: np.ndarray
    labels: np.ndarray
    difficult: Optional[np.ndarray] = None
    image_size: Size = None

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes, what="ground-truth boxes")
        n = self.boxes.shape[0]
        self.labels = _as_vector(self.labels, n=n, dtype=np.int64, what="ground-truth labels")
        if self.difficult is None:
            self.difficult = np.zeros(n, dtype=bool)
        self.difficult = _as_vector(self.difficult, n=n, dtype=bool, what="difficult flags")


@dataclass
class ImagePred:
    """Predictions for one image: ``boxes [N, 4]`` xyxy pixels, ``labels [N]``, ``scores [N]``.

    ``image_size`` (width, height) is the size the boxes refer to; when it differs from the
    ground-truth size the boxes are rescaled. ``None`` means "same as the ground truth".
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    image_size: Size = None

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes, what="predicted boxes")
        n = self.boxes.shape[0]
        self.labels = _as_vector(self.labels, n=n, dtype=np.int64, what="predicted labels")
        self.scores = _as_vector(self.scores, n=n, dtype=np.float64, what="scores")
        if not np.isfinite(self.scores).all():
            raise InvalidInputError("scores must be finite, got NaN or infinity")


@dataclass
class VocResult:
    """VOC evaluation result; per-class arrays are indexed by class id (NaN = undefined)."""

    ap_per_class: np.ndarray
    map: float
    map_weighted: float
    recall: float
    recall_per_class: np.ndarray
    n_pos: np.ndarray
    ap_joint_classes: float
    iou_thresh: float
    use_07_metric: bool
    precision_curves: List[Optional[np.ndarray]] = field(default_factory=list, repr=False)
    recall_curves: List[Optional[np.ndarray]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes ``None``)."""
        return {
            "iou_thresh": self.iou_thresh, "use_07_metric": self.use_07_metric,
            "ap_per_class": _nan_to_none(self.ap_per_class), "map": _nan_to_none(self.map),
            "map_weighted": _nan_to_none(self.map_weighted), "recall": _nan_to_none(self.recall),
            "recall_per_class": _nan_to_none(self.recall_per_class),
            "n_pos": [int(v) for v in self.n_pos],
            "ap_joint_classes": _nan_to_none(self.ap_joint_classes),
        }


def _nan_to_none(value):
    if isinstance(value, np.ndarray):
        return [_nan_to_none(float(v)) for v in value]
    value = float(value)
    return None if np.isnan(value) else value


def _as_boxes(boxes, *, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidInputError(f"{what}: expected shape [N, 4], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{what}: contain NaN or infinite values")
    return arr


def _as_vector(values, *, n: int, dtype, what: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1) if np.size(values) else np.zeros(0)
    if arr.shape != (n,):
        raise InvalidInputError(f"{what}: expected {n} values (one per box), got shape {np.shape(values)}")
    return arr.astype(dtype)


def rescale_boxes(boxes: np.ndarray, *, from_size: Size, to_size: Size) -> torch.Tensor:
    """``Tensor[N, 4]`` float32 boxes scaled from ``from_size`` to ``to_size`` (both (w, h))."""
    tensor = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if from_size is None or to_size is None:
        return tensor
    if min(from_size) <= 0 or min(to_size) <= 0:
        raise InvalidInputError(f"image sizes must be positive, got {from_size} and {to_size}")
    ratio_w = float(to_size[0]) / from_size[0]
    ratio_h = float(to_size[1]) / from_size[1]
    if ratio_w == ratio_h:
        return tensor * ratio_w
    x1, y1, x2, y2 = tensor.split(1, dim=-1)
    return torch.cat((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=-1)


def _iou_plus_one(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """IoU ``[P, G]`` after adding 1 to x2, y2 (VOC integer-pixel convention), in float32."""
    one = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float32)
    return box_iou(pred + one, gt + one).numpy()


def match_detections(
    pred_boxes: torch.Tensor, pred_scores: np.ndarray, gt_boxes: torch.Tensor,
    gt_difficult: np.ndarray, *, iou_thresh: float,
) -> Tuple[np.ndarray, np.ndarray]:
    """Match one class's detections in one image to its GT.

    Returns ``(scores, match)`` with detections in decreasing score order and ``match`` int8:
    1 = true positive, 0 = false positive, -1 = matched a difficult box (ignored).
    """
    order = pred_scores.argsort()[::-1]
    scores = pred_scores[order]
    if len(gt_boxes) == 0:
        return scores, np.zeros(len(order), dtype=np.int8)
    iou = _iou_plus_one(pred_boxes[torch.as_tensor(order.copy())], gt_boxes)
    gt_index = iou.argmax(axis=1)
    gt_index[iou.max(axis=1) < iou_thresh] = -1
    taken = np.zeros(len(gt_boxes), dtype=bool)
    match = np.zeros(len(order), dtype=np.int8)
    for i, g in enumerate(gt_index):
        if g < 0:
            continue
        if gt_difficult[g]:
            match[i] = -1
        elif not taken[g]:
            match[i] = 1
        taken[g] = True
    return scores, match


def _accumulate(gts: Sequence[ImageGT], preds: Sequence[ImagePred], *, iou_thresh: float):
    """Per-class positives count, scores and matches over all images (dicts keyed by class)."""
    n_pos: Dict[int, int] = {}
    scores: Dict[int, List[np.ndarray]] = {}
    matches: Dict[int, List[np.ndarray]] = {}
    for gt, pred in zip(gts, preds):
        boxes = rescale_boxes(pred.boxes, from_size=pred.image_size, to_size=gt.image_size)
        gt_boxes = torch.as_tensor(gt.boxes, dtype=torch.float32)
        for label in np.unique(np.concatenate((pred.labels, gt.labels))).astype(int):
            gt_mask = gt.labels == label
            pred_mask = torch.as_tensor(pred.labels == label)
            n_pos[label] = n_pos.get(label, 0) + int(np.logical_not(gt.difficult[gt_mask]).sum())
            s, m = match_detections(
                boxes[pred_mask], pred.scores[pred.labels == label], gt_boxes[torch.as_tensor(gt_mask)],
                gt.difficult[gt_mask], iou_thresh=iou_thresh,
            )
            scores.setdefault(label, []).append(s)
            matches.setdefault(label, []).append(m)
    return n_pos, scores, matches


def precision_recall(scores: np.ndarray, match: np.ndarray, n_pos: int):
    """Precision and recall curves (recall ``None`` when ``n_pos`` is 0), ranked by score."""
    order = scores.argsort()[::-1]
    match = match[order]
    tp = np.cumsum(match == 1)
    fp = np.cumsum(match == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp / (fp + tp)
    rec = tp / n_pos if n_pos > 0 else None
    return prec, rec


def average_precision(prec: Optional[np.ndarray], rec: Optional[np.ndarray], *,
                      use_07_metric: bool = False) -> float:
    """VOC AP from precision/recall curves; NaN when either is ``None``."""
    if prec is None or rec is None:
        return float("nan")
    prec = np.nan_to_num(prec)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = rec >= t
            ap += (np.max(prec[above]) if above.any() else 0.0) / 11
        return float(ap)
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _check_inputs(gts: Sequence[ImageGT], preds: Sequence[ImagePred], num_classes: Optional[int]) -> int:
    if len(gts) != len(preds):
        raise InvalidInputError(f"got {len(gts)} ground-truth images but {len(preds)} prediction entries")
    for i, (gt, pred) in enumerate(zip(gts, preds)):
        if not isinstance(gt, ImageGT) or not isinstance(pred, ImagePred):
            raise InvalidTypeError(f"image {i}: expected ImageGT and ImagePred, got "
                            f"{type(gt).__name__} and {type(pred).__name__}")
    labels = np.concatenate([np.zeros(0, dtype=np.int64)] + [g.labels for g in gts] + [p.labels for p in preds])
    if labels.size and labels.min() < 0:
        raise InvalidInputError(f"class labels must be >= 0, got {int(labels.min())}")
    seen = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        return seen
    if seen > num_classes:
        raise InvalidInputError(f"label {seen - 1} is out of range for num_classes={num_classes}")
    return int(num_classes)


def _recall_stats(rec: List[Optional[np.ndarray]], n_pos: np.ndarray) -> Tuple[float, np.ndarray]:
    recall_per_class = np.full(len(rec), np.nan)
    for label, r in enumerate(rec):
        if r is not None and n_pos[label] > 0:
            recall_per_class[label] = r[-1] if len(r) else 0.0
    valid = n_pos > 0
    total = n_pos[valid].sum()
    recall = float((n_pos[valid] * recall_per_class[valid]).sum() / total) if total > 0 else float("nan")
    return recall, recall_per_class


def _joint_ap(n_pos, scores, matches, *, use_07_metric: bool) -> float:
    """AP of all classes' detections ranked together (classes concatenated in first-seen order)."""
    all_scores = np.concatenate([np.zeros(0)] + [s for v in scores.values() for s in v])
    all_match = np.concatenate([np.zeros(0, dtype=np.int8)] + [m for v in matches.values() for m in v])
    prec, rec = precision_recall(all_scores, all_match, int(sum(n_pos.values())))
    return average_precision(prec, rec, use_07_metric=use_07_metric)


def voc_evaluation(
    gt: Sequence[ImageGT], preds: Sequence[ImagePred], *, iou_thresh: float = 0.5,
    use_07_metric: bool = False, num_classes: Optional[int] = None,
) -> VocResult:
    """Evaluate detections against ground truth with the reference OS2D VOC protocol.

    Args:
        gt: one :class:`ImageGT` per image.
        preds: one :class:`ImagePred` per image, in the same order.
        iou_thresh: a detection matches a GT box when IoU >= ``iou_thresh``.
        use_07_metric: 11-point VOC2007 AP instead of the all-point area.
        num_classes: number of classes (labels are ``0..num_classes-1``); default: largest
            label seen + 1 (as the reference).
    """
    if not 0.0 < iou_thresh <= 1.0:
        raise InvalidInputError(f"iou_thresh must be in (0, 1], got {iou_thresh}")
    n_classes = _check_inputs(gt, preds, num_classes)
    n_pos_d, scores, matches = _accumulate(gt, preds, iou_thresh=iou_thresh)
    n_pos = np.array([n_pos_d.get(c, 0) for c in range(n_classes)], dtype=np.int64)
    prec_curves: List[Optional[np.ndarray]] = [None] * n_classes
    rec_curves: List[Optional[np.ndarray]] = [None] * n_classes
    for label in n_pos_d:
        s = np.concatenate(scores[label])
        m = np.concatenate(matches[label])
        prec_curves[label], rec_curves[label] = precision_recall(s, m, n_pos_d[label])
    ap = np.array([average_precision(p, r, use_07_metric=use_07_metric)
                   for p, r in zip(prec_curves, rec_curves)], dtype=np.float64)
    recall, recall_per_class = _recall_stats(rec_curves, n_pos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_ap = float(np.nanmean(ap)) if n_classes else float("nan")
    total = n_pos.sum()
    map_weighted = float(np.nansum(ap * n_pos / total)) if total > 0 else float("nan")
    joint = _joint_ap(n_pos_d, scores, matches, use_07_metric=use_07_metric) if n_pos_d else float("nan")
    return VocResult(
        ap_per_class=ap, map=mean_ap, map_weighted=map_weighted, recall=recall,
        recall_per_class=recall_per_class, n_pos=n_pos, ap_joint_classes=joint,
        iou_thresh=float(iou_thresh), use_07_metric=bool(use_07_metric),
        precision_curves=prec_curves, recall_curves=rec_curves,
    )
