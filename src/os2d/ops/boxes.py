"""Boxes: anchors, the standard box encoding (torchvision's BoxCoder convention), clipping, NMS.

Everything about boxes lives here: anchors are defined once (:func:`anchor_boxes`), clipping is
torchvision's ``clip_boxes_to_image``, NMS is torchvision's ``batched_nms`` (one global NMS per
class) or :func:`reference_nms` (the reference implementation's chunked NMS).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert, clip_boxes_to_image, nms

#: Weights (wx, wy, ww, wh) of the Faster R-CNN box encoding used by OS2D.
BOX_CODER_WEIGHTS: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
#: Upper clamp of the decoded log-size offsets ``dw / ww``, ``dh / wh`` (torchvision's value).
DEFAULT_DECODE_CLAMP: float = math.log(1000.0 / 16)


def anchor_boxes(centers: Tensor, *, stride: float, size: float) -> Tensor:
    """Square anchors of feature-map locations ``centers`` ``Tensor[..., 2]`` (col, row) -> ``Tensor[..., 4]``.

    The anchor of ``(col, row)`` is centred at ``((col + 0.5) * stride, (row + 0.5) * stride)``, xyxy
    image pixels, not clipped.
    """
    centre = (centers + 0.5) * stride
    half = size / 2.0
    return torch.cat([centre - half, centre + half], -1)


def make_anchors(height: int, width: int, *, stride: float, size: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """:func:`anchor_boxes` of every location of an H x W map, row-major: ``Tensor[H*W, 4]``."""
    rows = torch.arange(height, dtype=dtype, device=device)
    cols = torch.arange(width, dtype=dtype, device=device)
    cy, cx = torch.meshgrid(rows, cols, indexing="ij")
    return anchor_boxes(torch.stack([cx, cy], -1).reshape(-1, 2), stride=stride, size=size)
    # [H*W, 4]


def _to_cxcywh_min_size(boxes: Tensor, min_size: float = 1.0) -> Tensor:
    """xyxy ``Tensor[..., 4]`` -> cxcywh with width/height enlarged (about the centre) to >= min_size."""
    cxcywh = box_convert(boxes, "xyxy", "cxcywh")  # [..., 4]
    centre, size = cxcywh[..., :2], cxcywh[..., 2:]
    return torch.cat([centre, size.clamp(min=min_size)], dim=-1)  # [..., 4]


def _check_weights(weights: Sequence[float]) -> Tuple[float, float, float, float]:
    if len(weights) != 4:
        raise ValueError(f"box coder weights must have 4 values (wx, wy, ww, wh), got {weights!r}")
    return tuple(float(w) for w in weights)  # type: ignore[return-value]


def encode_boxes(
    boxes: Tensor,
    anchors: Tensor,
    weights: Sequence[float] = BOX_CODER_WEIGHTS,
) -> Tensor:
    """Encode boxes w.r.t. anchors with the standard Faster R-CNN parametrisation.

    Convention of torchvision's ``BoxCoder``: width ``w = x2 - x1`` (no +1), centre
    ``cx = x1 + 0.5 * w``; ``dx = wx * (cx - cx_a) / w_a``, ``dw = ww * log(w / w_a)`` (same for y/h).
    Both boxes and anchors are first enlarged about their centre to be at least 1 px wide and high,
    which keeps ``log`` finite for degenerate boxes.

    Args:
        boxes: ``Tensor[..., 4]`` xyxy target boxes.
        anchors: ``Tensor[..., 4]`` xyxy anchors, broadcastable against ``boxes``.
        weights: ``(wx, wy, ww, wh)``.

    Returns:
        ``Tensor[..., 4]`` codes ``(dx, dy, dw, dh)`` (broadcast shape of the inputs).
    """
    wx, wy, ww, wh = _check_weights(weights)
    if boxes.shape[-1] != 4 or anchors.shape[-1] != 4:
        raise ValueError(f"boxes and anchors must end with a dimension of 4, got {tuple(boxes.shape)} "
                         f"and {tuple(anchors.shape)}")
    dtype = torch.promote_types(boxes.dtype, anchors.dtype)
    dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    b = _to_cxcywh_min_size(boxes.to(dtype))  # [..., 4]
    a = _to_cxcywh_min_size(anchors.to(dtype))  # [..., 4]
    dx = wx * (b[..., 0] - a[..., 0]) / a[..., 2]
    dy = wy * (b[..., 1] - a[..., 1]) / a[..., 3]
    dw = ww * torch.log(b[..., 2] / a[..., 2])
    dh = wh * torch.log(b[..., 3] / a[..., 3])
    return torch.stack([dx, dy, dw, dh], dim=-1)  # [..., 4]


def decode_boxes(
    codes: Tensor,
    anchors: Tensor,
    weights: Sequence[float] = BOX_CODER_WEIGHTS,
    clamp: float = DEFAULT_DECODE_CLAMP,
) -> Tensor:
    """Inverse of :func:`encode_boxes`.

    Args:
        codes: ``Tensor[..., 4]`` ``(dx, dy, dw, dh)``.
        anchors: ``Tensor[..., 4]`` xyxy anchors, broadcastable against ``codes`` (enlarged to >= 1 px
            exactly as in :func:`encode_boxes`).
        weights: ``(wx, wy, ww, wh)``.
        clamp: upper bound applied to ``dw / ww`` and ``dh / wh`` before ``exp``.

    Returns:
        ``Tensor[..., 4]`` decoded xyxy boxes.
    """
    wx, wy, ww, wh = _check_weights(weights)
    if codes.shape[-1] != 4 or anchors.shape[-1] != 4:
        raise ValueError(f"codes and anchors must end with a dimension of 4, got {tuple(codes.shape)} "
                         f"and {tuple(anchors.shape)}")
    a = _to_cxcywh_min_size(anchors.to(codes.dtype))  # [..., 4]
    dx = codes[..., 0] / wx
    dy = codes[..., 1] / wy
    dw = (codes[..., 2] / ww).clamp(max=clamp)
    dh = (codes[..., 3] / wh).clamp(max=clamp)
    cx = dx * a[..., 2] + a[..., 0]
    cy = dy * a[..., 3] + a[..., 1]
    w = torch.exp(dw) * a[..., 2]
    h = torch.exp(dh) * a[..., 3]
    return box_convert(torch.stack([cx, cy, w, h], dim=-1), "cxcywh", "xyxy")  # [..., 4]


def clip_boxes(boxes: torch.Tensor, *, width: float, height: float) -> torch.Tensor:
    """Clip xyxy boxes ``Tensor[N, 4]`` to ``[0, width] x [0, height]`` (torchvision's clip_boxes_to_image)."""
    return clip_boxes_to_image(boxes, (height, width))


def enlarge_to_min_size(boxes: Tensor, min_size: float = 1.0) -> Tensor:
    """xyxy boxes ``Tensor[..., 4]`` enlarged about their centre to be at least ``min_size`` wide and high
    (what decoding an encoded box does, see :func:`encode_boxes`)."""
    small = ((boxes[..., 2] - boxes[..., 0]) < min_size) | ((boxes[..., 3] - boxes[..., 1]) < min_size)
    if not bool(small.any()):
        return boxes  # the common case, bit-exact
    enlarged = box_convert(_to_cxcywh_min_size(boxes, min_size), "cxcywh", "xyxy")
    return torch.where(small[..., None], enlarged, boxes)


def nonempty(boxes: torch.Tensor) -> torch.Tensor:
    """Mask of boxes with positive width and height: ``Tensor[..., 4]`` -> ``Tensor[...]`` bool."""
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def corners_to_boxes(corners: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes around point sets: ``Tensor[..., S, 2]`` -> ``Tensor[..., 4]``."""
    mins = corners.amin(dim=-2)
    maxs = corners.amax(dim=-2)
    return torch.cat([mins, maxs], -1)


def nms_per_class(boxes: Tensor, scores: Tensor, labels: Tensor, *, iou: float) -> Tensor:
    """Indices kept by one NMS per label (torchvision ``batched_nms``), by decreasing score."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    keep = batched_nms(boxes, scores.to(boxes.dtype), labels, iou)
    order = torch.sort(scores[keep], descending=True, stable=True).indices
    return keep[order]


def reference_nms(boxes: Tensor, scores: Tensor, *, iou: float, max_batch: int = 10_000) -> Tensor:
    """The reference implementation's NMS for one class (``os2d.structures.bounding_box.nms``).

    The boxes, in the order given (the reference concatenates class images, then pyramid levels),
    are cut into consecutive chunks of ``max_batch``; NMS runs in each chunk and the survivors (each
    chunk's by decreasing score) are concatenated; this repeats until one chunk is left or nothing
    changed. With more than ``max_batch`` candidates the result can differ from one global NMS.

    Returns:
        kept indices, by decreasing score (stable).
    """
    alive = torch.arange(boxes.shape[0], device=boxes.device)
    while True:
        count = alive.numel()
        chunks = [alive[i:i + max_batch] for i in range(0, count, max_batch)]
        alive = torch.cat([c[nms(boxes[c], scores[c].to(boxes.dtype), iou)] for c in chunks]) if chunks \
            else alive
        if len(chunks) <= 1 or alive.numel() == count:
            break
    order = torch.sort(scores[alive], descending=True, stable=True).indices
    return alive[order]
