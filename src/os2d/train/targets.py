"""Box encoding and anchor target assignment for the OS2D objective (paper, section 4).

Shape glossary (see ``docs/conventions.md``): B scene images, K classes in the class batch,
N anchors (= H*W feature-map locations, row-major), G ground-truth boxes of one image.
Boxes are ``xyxy`` floats in pixels.

Two kinds of targets are produced:

* :func:`assign_targets` -- the standard detection assignment w.r.t. the *anchors*
  (IoU >= 0.5 positive, IoU < 0.1 negative, in between ignored). Its ``loc_targets`` /
  ``loc_mask`` feed the localization loss.
* :func:`remap_recognition_targets` -- the paper's *target remapping*: recognition labels are
  decided from the boxes the model actually output at each anchor, with the stricter
  thresholds 0.8 / 0.4.

Label values everywhere: ``1`` positive, ``0`` negative, ``-1`` ignore.

Threshold convention (the one of torchvision's ``Matcher``): a box is positive when its best IoU
is ``>= pos_iou``, negative when it is ``< neg_iou``, ignored in between. An anchor whose best
matching GT box (highest IoU among the boxes of that class, difficult ones included) is
difficult is ignored rather than positive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor
from torchvision.ops import box_iou

from os2d.errors import InvalidInputError
from os2d.ops.boxes import (
    BOX_CODER_WEIGHTS,
    DEFAULT_DECODE_CLAMP,
    decode_boxes,
    encode_boxes,
)

__all__ = [
    "BOX_CODER_WEIGHTS",
    "DEFAULT_DECODE_CLAMP",
    "AnchorTargets",
    "encode_boxes",
    "decode_boxes",
    "assign_targets",
    "assign_targets_batch",
    "remap_recognition_targets",
    "remap_recognition_targets_batch",
]

LABEL_POSITIVE = 1
LABEL_NEGATIVE = 0
LABEL_IGNORE = -1


# --------------------------------------------------------------------------------------------
# target assignment
# --------------------------------------------------------------------------------------------
@dataclass
class AnchorTargets:
    """Targets of all anchor-class pairs of one image (``[K, ...]``) or of a batch (``[B, K, ...]``).

    Attributes:
        loc_targets: ``Tensor[(B,) K, 4, N]`` float, encoding (:func:`encode_boxes`) of the
            best-matching GT box of class k w.r.t. each anchor; zeros where the image has no GT
            of class k. Only meaningful where ``loc_mask`` is set.
        loc_mask: ``Tensor[(B,) K, N]`` bool, anchors used by the localization loss: best IoU with a
            GT of class k ``>= pos_iou`` and that GT is not difficult (equals ``labels == 1``).
        labels: ``Tensor[(B,) K, N]`` int8, 1 positive / 0 negative / -1 ignore.
        matched_gt: ``Tensor[(B,) K, N]`` long, index (into that image's GT list) of the GT box
            matched with IoU ``>= pos_iou`` (difficult ones included), ``-1`` when none.
    """

    loc_targets: Tensor
    loc_mask: Tensor
    labels: Tensor
    matched_gt: Tensor

    @classmethod
    def stack(cls, items: Sequence["AnchorTargets"]) -> "AnchorTargets":
        """Stack per-image targets ``[K, ...]`` into batch targets ``[B, K, ...]``."""
        if len(items) == 0:
            raise InvalidInputError("cannot stack an empty list of AnchorTargets")
        return cls(
            loc_targets=torch.stack([t.loc_targets for t in items], 0),  # [B, K, 4, N]
            loc_mask=torch.stack([t.loc_mask for t in items], 0),  # [B, K, N]
            labels=torch.stack([t.labels for t in items], 0),  # [B, K, N]
            matched_gt=torch.stack([t.matched_gt for t in items], 0),  # [B, K, N]
        )

    def to(self, *args, **kwargs) -> "AnchorTargets":
        """``Tensor.to`` applied to ``loc_targets``; the other fields follow its device only."""
        loc_targets = self.loc_targets.to(*args, **kwargs)
        device = loc_targets.device
        return AnchorTargets(
            loc_targets=loc_targets,
            loc_mask=self.loc_mask.to(device),
            labels=self.labels.to(device),
            matched_gt=self.matched_gt.to(device),
        )


def _check_gt(gt_boxes: Tensor, gt_labels: Tensor, gt_difficult: Tensor, num_classes: int) -> Tensor:
    """Validate GT tensors; returns ``gt_difficult`` as a bool ``Tensor[G]``."""
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4:
        raise InvalidInputError(f"gt_boxes must be Tensor[G, 4], got shape {tuple(gt_boxes.shape)}")
    g = gt_boxes.shape[0]
    if gt_labels.shape != (g,):
        raise InvalidInputError(f"gt_labels must be Tensor[G] with G={g}, got shape {tuple(gt_labels.shape)}")
    if gt_difficult is None:
        gt_difficult = torch.zeros(g, dtype=torch.bool, device=gt_boxes.device)
    if gt_difficult.shape != (g,):
        raise InvalidInputError(f"gt_difficult must be Tensor[G] with G={g}, got shape {tuple(gt_difficult.shape)}")
    if num_classes < 1:
        raise InvalidInputError(f"num_classes must be >= 1, got {num_classes}")
    if g > 0 and (int(gt_labels.min()) < 0 or int(gt_labels.max()) >= num_classes):
        raise InvalidInputError(f"gt_labels must lie in 0..{num_classes - 1}, got values {gt_labels.tolist()}")
    return gt_difficult.to(torch.bool)


def _check_thresholds(pos_iou: float, neg_iou: float) -> None:
    if not 0.0 <= neg_iou <= pos_iou <= 1.0:
        raise InvalidInputError(f"IoU thresholds must satisfy 0 <= neg_iou <= pos_iou <= 1, got "
                         f"neg_iou={neg_iou}, pos_iou={pos_iou}")


def _match_per_class(
    ious: Tensor, gt_labels: Tensor, gt_difficult: Tensor, num_classes: int, pos_iou: float, neg_iou: float
) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-class matching from an IoU tensor ``ious: Tensor[K or 1, N, G]``.

    Returns ``labels Tensor[K, N] int8``, ``best_gt Tensor[K, N] long`` (index of the best GT of
    class k, -1 if the image has no GT of class k) and ``best_iou Tensor[K, N]``.
    """
    g = gt_labels.shape[0]
    n = ious.shape[1]
    classes = torch.arange(num_classes, device=gt_labels.device)
    ious = torch.nan_to_num(ious, nan=0.0)  # 0/0 from two zero-area boxes
    class_of_gt = gt_labels.view(1, 1, g) == classes.view(num_classes, 1, 1)  # [K, 1, G]
    # IoU with GTs of other classes is set to -1 so they never win the argmax
    ious = torch.where(class_of_gt, ious, torch.full_like(ious, -1.0))  # [K, N, G]
    if g > 0:
        best_iou, best_gt = ious.max(dim=2)  # [K, N], [K, N]
    else:
        best_iou = ious.new_full((num_classes, n), -1.0)
        best_gt = torch.full((num_classes, n), -1, dtype=torch.long, device=ious.device)
    has_gt = best_iou >= 0  # [K, N]; False iff the image has no GT of class k
    best_gt = torch.where(has_gt, best_gt, torch.full_like(best_gt, -1))
    best_iou = best_iou.clamp(min=0.0)  # 0 where there is no GT of class k

    best_difficult = gt_difficult[best_gt.clamp(min=0)] & has_gt if g > 0 else torch.zeros_like(has_gt)
    above = has_gt & (best_iou >= pos_iou)  # [K, N]
    labels = torch.full(best_iou.shape, LABEL_IGNORE, dtype=torch.int8, device=best_iou.device)
    labels[~has_gt | (best_iou < neg_iou)] = LABEL_NEGATIVE
    labels[above & ~best_difficult] = LABEL_POSITIVE
    labels[above & best_difficult] = LABEL_IGNORE
    return labels, best_gt, best_iou


def assign_targets(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_difficult: Tensor,
    num_classes: int,
    *,
    pos_iou: float = 0.5,
    neg_iou: float = 0.1,
    weights: Sequence[float] = BOX_CODER_WEIGHTS,
) -> AnchorTargets:
    """Assign detection targets to every anchor-class pair of one image.

    For class k, each anchor is compared with the GT boxes of class k only:

    * best IoU ``>= pos_iou`` with a non-difficult GT -> label 1, ``loc_mask`` set;
    * best IoU ``>= pos_iou`` but the best GT is difficult -> label -1 (ignored);
    * ``neg_iou <= `` best IoU ``< pos_iou`` -> label -1;
    * best IoU ``< neg_iou`` (or no GT of class k) -> label 0.

    Unlike regular detectors, no GT is forced to get a positive anchor (the paper, section 4: an
    image is processed at one scale, which may not fit the object).

    Args:
        anchors: ``Tensor[N, 4]`` xyxy anchors (row-major over the H x W feature map).
        gt_boxes: ``Tensor[G, 4]`` xyxy GT boxes (G may be 0).
        gt_labels: ``Tensor[G]`` integer class index in ``0..K-1`` (position in the class batch).
        gt_difficult: ``Tensor[G]`` bool, difficult flags (``None`` = none difficult).
        num_classes: K, the number of classes in the class batch.
        pos_iou, neg_iou: IoU thresholds.
        weights: box coder weights of :func:`encode_boxes`.

    Returns:
        :class:`AnchorTargets` with fields of shape ``[K, 4, N]`` / ``[K, N]``.
    """
    if anchors.dim() != 2 or anchors.shape[-1] != 4:
        raise InvalidInputError(f"anchors must be Tensor[N, 4], got shape {tuple(anchors.shape)}")
    gt_difficult = _check_gt(gt_boxes, gt_labels, gt_difficult, num_classes)
    _check_thresholds(pos_iou, neg_iou)
    k = num_classes
    n = anchors.shape[0]
    dtype = anchors.dtype if anchors.is_floating_point() else torch.float32
    anchors = anchors.to(dtype)
    gt_boxes = gt_boxes.to(device=anchors.device, dtype=dtype)
    gt_labels = gt_labels.to(anchors.device)
    gt_difficult = gt_difficult.to(anchors.device)

    ious = box_iou(anchors, gt_boxes).unsqueeze(0)  # [1, N, G]
    labels, best_gt, best_iou = _match_per_class(ious, gt_labels, gt_difficult, k, pos_iou, neg_iou)

    if gt_boxes.shape[0] > 0:
        matched_boxes = gt_boxes[best_gt.clamp(min=0)]  # [K, N, 4]
        loc_targets = encode_boxes(matched_boxes, anchors.unsqueeze(0), weights)  # [K, N, 4]
        loc_targets = torch.where((best_gt >= 0).unsqueeze(-1), loc_targets, torch.zeros_like(loc_targets))
    else:
        loc_targets = anchors.new_zeros(k, n, 4)  # [K, N, 4]
    loc_targets = loc_targets.permute(0, 2, 1).contiguous()  # [K, 4, N]

    matched = (best_gt >= 0) & (best_iou >= pos_iou)  # [K, N]
    matched_gt = torch.where(matched, best_gt, torch.full_like(best_gt, -1))  # [K, N]
    loc_mask = labels == LABEL_POSITIVE  # [K, N]
    return AnchorTargets(loc_targets=loc_targets, loc_mask=loc_mask, labels=labels, matched_gt=matched_gt)


def assign_targets_batch(
    anchors: Union[Tensor, Sequence[Tensor]],
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    gt_difficult: Sequence[Tensor],
    num_classes: int,
    *,
    pos_iou: float = 0.5,
    neg_iou: float = 0.1,
    weights: Sequence[float] = BOX_CODER_WEIGHTS,
) -> AnchorTargets:
    """:func:`assign_targets` for B images, stacked to ``[B, K, 4, N]`` / ``[B, K, N]``.

    Args:
        anchors: ``Tensor[N, 4]`` shared by all images, or ``Tensor[B, N, 4]`` / a list of B
            ``Tensor[N, 4]`` (same N, since the results are stacked).
        gt_boxes, gt_labels, gt_difficult: lists of B per-image tensors (see :func:`assign_targets`);
            ``gt_difficult`` may be ``None`` (nothing difficult).
    """
    b = len(gt_boxes)
    if len(gt_labels) != b or (gt_difficult is not None and len(gt_difficult) != b):
        raise InvalidInputError(f"gt_boxes, gt_labels, gt_difficult must have the same length, got {b}, "
                         f"{len(gt_labels)}, {None if gt_difficult is None else len(gt_difficult)}")
    if isinstance(anchors, Tensor) and anchors.dim() == 2:
        per_image = [anchors] * b
    else:
        per_image = list(anchors)
        if len(per_image) != b:
            raise InvalidInputError(f"got anchors for {len(per_image)} images but GT for {b} images")
    difficult = gt_difficult if gt_difficult is not None else [None] * b
    items = [
        assign_targets(a, bx, lb, df, num_classes, pos_iou=pos_iou, neg_iou=neg_iou, weights=weights)
        for a, bx, lb, df in zip(per_image, gt_boxes, gt_labels, difficult)
    ]
    return AnchorTargets.stack(items)


def remap_recognition_targets(
    output_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_difficult: Tensor,
    num_classes: int,
    *,
    pos_iou: float = 0.8,
    neg_iou: float = 0.4,
) -> Tensor:
    """Target remapping (paper, section 4): recognition labels from the boxes the model output.

    For class k and anchor i the box ``output_boxes[k, i]`` (what the model localized at that
    anchor for class k, decoded to xyxy pixels) is compared with the GT boxes of class k:
    best IoU ``>= pos_iou`` with a non-difficult GT -> 1; ``< neg_iou`` with all GTs of class k
    (or no GT of class k) -> 0; in between, or best match difficult -> -1.

    Args:
        output_boxes: ``Tensor[K, N, 4]`` xyxy output boxes (treat as detached; no gradient is used).
        gt_boxes: ``Tensor[G, 4]``; gt_labels: ``Tensor[G]`` in ``0..K-1``; gt_difficult:
            ``Tensor[G]`` bool or ``None``.
        num_classes: K.

    Returns:
        ``Tensor[K, N]`` int8 labels.
    """
    if output_boxes.dim() != 3 or output_boxes.shape[0] != num_classes or output_boxes.shape[-1] != 4:
        raise InvalidInputError(f"output_boxes must be Tensor[K, N, 4] with K={num_classes}, got shape "
                         f"{tuple(output_boxes.shape)}")
    gt_difficult = _check_gt(gt_boxes, gt_labels, gt_difficult, num_classes)
    _check_thresholds(pos_iou, neg_iou)
    k, n, _ = output_boxes.shape
    boxes = output_boxes.detach()
    boxes = boxes if boxes.is_floating_point() else boxes.float()
    gt_boxes = gt_boxes.to(device=boxes.device, dtype=boxes.dtype)
    ious = box_iou(boxes.reshape(k * n, 4), gt_boxes).view(k, n, gt_boxes.shape[0])  # [K, N, G]
    labels, _, _ = _match_per_class(ious, gt_labels.to(boxes.device), gt_difficult.to(boxes.device),
                                    k, pos_iou, neg_iou)
    return labels


def remap_recognition_targets_batch(
    output_boxes: Tensor,
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    gt_difficult: Sequence[Tensor],
    num_classes: int,
    *,
    pos_iou: float = 0.8,
    neg_iou: float = 0.4,
) -> Tensor:
    """:func:`remap_recognition_targets` for a batch.

    ``output_boxes: Tensor[B, K, N, 4]``, GT lists of length B -> ``Tensor[B, K, N]`` int8.
    """
    if output_boxes.dim() != 4:
        raise InvalidInputError(f"output_boxes must be Tensor[B, K, N, 4], got shape {tuple(output_boxes.shape)}")
    b = output_boxes.shape[0]
    if len(gt_boxes) != b or len(gt_labels) != b or (gt_difficult is not None and len(gt_difficult) != b):
        raise InvalidInputError(f"expected GT lists of length B={b}, got {len(gt_boxes)}, {len(gt_labels)}, "
                         f"{None if gt_difficult is None else len(gt_difficult)}")
    difficult = gt_difficult if gt_difficult is not None else [None] * b
    return torch.stack([
        remap_recognition_targets(output_boxes[i], gt_boxes[i], gt_labels[i], difficult[i], num_classes,
                                  pos_iou=pos_iou, neg_iou=neg_iou)
        for i in range(b)
    ], 0)  # [B, K, N]
