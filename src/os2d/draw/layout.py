"""Pure layout of a detection drawing: label rectangles that never overlap, and the legend.

Everything here works on plain numbers (no image, no font), so it is testable on its own.
Rectangles are ``(x1, y1, x2, y2)`` floats in canvas pixels; arrays of them are ``[N, 4]``.

Label placement (:func:`place_labels`) is greedy in the order given (the caller passes decreasing
score, so the best detections get the best spots). For each label it scores candidate positions
and takes the cheapest one that overlaps no label placed before it and no obstacle (the legend):

- 8 positions around the box, in this preference: above-left, below-left, inside-top-left,
  above-right, below-right, right side, left side, inside-bottom-left;
- if none of them is free of other boxes, shifted positions on a grid around the box (step
  half a label height, up to ``search_steps`` steps away), then anywhere in the area;
- the cost adds the distance to the box (in label heights), the share of the label that covers
  other boxes (x3) and the share that covers its own box (x0.5 for the inside positions, x2 for
  grid positions inside it), plus a small preference term; labels away from their box get a
  leader line to it.

Labels stay inside ``area`` (the image); a label that finds no free spot at all is left out
(its box is still drawn).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

Rect = Tuple[float, float, float, float]

#: Cost weight of the share of a label that covers boxes other than its own.
OTHER_BOX_WEIGHT = 3.0
#: Preference cost of a grid (shifted) position relative to the 8 positions around the box.
GRID_PREFERENCE = 0.25


@dataclass(frozen=True)
class LabelPlacement:
    """Where one label goes: its rectangle and, when it does not touch its box, a leader line."""

    rect: Rect
    leader: Optional[Rect] = None  # (xa, ya, xb, yb): from the label's edge to the box's edge


@dataclass(frozen=True)
class LegendLayout:
    """The legend's rectangle, one rectangle per entry, and the canvas size it needs."""

    rect: Rect
    entries: List[Rect]
    canvas_size: Tuple[int, int]  # (width, height): the image, or the image plus a strip below
    in_strip: bool


def overlaps(rects: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``Tensor[M]`` bool: does each of ``rects [M, 4]`` overlap (positive area) any of ``others [P, 4]``."""
    if len(others) == 0 or len(rects) == 0:
        return np.zeros(len(rects), dtype=bool)
    a, b = rects[:, None, :], others[None, :, :]  # [M, 1, 4], [1, P, 4]
    hit = (a[..., 0] < b[..., 2]) & (b[..., 0] < a[..., 2]) & (a[..., 1] < b[..., 3]) & (b[..., 1] < a[..., 3])
    return hit.any(axis=1)


def intersection_areas(rects: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``[M, P]`` intersection areas of ``rects [M, 4]`` with ``others [P, 4]``."""
    a, b = rects[:, None, :], others[None, :, :]  # [M, 1, 4], [1, P, 4]
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _gaps(rects: np.ndarray, box: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    dx = np.maximum.reduce([np.zeros(len(rects)), box[0] - rects[:, 2], rects[:, 0] - box[2]])
    dy = np.maximum.reduce([np.zeros(len(rects)), box[1] - rects[:, 3], rects[:, 1] - box[3]])
    return dx, dy


def _adjacent(box: np.ndarray, w: float, h: float) -> np.ndarray:
    x1, y1, x2, y2 = box
    corners = [(x1, y1 - h), (x1, y2), (x1, y1), (x2 - w, y1 - h), (x2 - w, y2), (x2, y1), (x1 - w, y1),
               (x1, y2 - h)]
    return np.array(corners, dtype=np.float64)  # [8, 2] top-left corners


def _grid(lo_x: float, hi_x: float, lo_y: float, hi_y: float, step: float) -> np.ndarray:
    xs = np.arange(lo_x, hi_x + 1e-6, step)
    ys = np.arange(lo_y, hi_y + 1e-6, step)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)  # [M, 2]


def _to_rects(corners: np.ndarray, w: float, h: float, area: Rect) -> np.ndarray:
    x = np.clip(corners[:, 0], area[0], max(area[0], area[2] - w))
    y = np.clip(corners[:, 1], area[1], max(area[1], area[3] - h))
    return np.stack([x, y, x + w, y + h], axis=1)  # [M, 4]


def _costs(rects: np.ndarray, index: int, boxes: np.ndarray, h: float, own_weight: float,
           preference: np.ndarray) -> np.ndarray:
    label_area = max((rects[0, 2] - rects[0, 0]) * h, 1e-9)
    inter = intersection_areas(rects, boxes)  # [M, N]
    own = inter[:, index] / label_area
    other = np.clip((inter.sum(axis=1) - inter[:, index]) / label_area, 0, 1)
    dx, dy = _gaps(rects, boxes[index])
    return preference + np.hypot(dx, dy) / h + OTHER_BOX_WEIGHT * other + own_weight * own


def _leader(rect: np.ndarray, box: np.ndarray, min_gap: float) -> Optional[Rect]:
    dx, dy = _gaps(rect[None], box)
    if np.hypot(dx[0], dy[0]) <= min_gap:
        return None

    def ends(a1, a2, b1, b2):
        if a2 < b1:
            return a2, b1
        if b2 < a1:
            return a1, b2
        mid = (max(a1, b1) + min(a2, b2)) / 2
        return mid, mid

    xa, xb = ends(rect[0], rect[2], box[0], box[2])
    ya, yb = ends(rect[1], rect[3], box[1], box[3])
    return float(xa), float(ya), float(xb), float(yb)


def _best_free(rects: np.ndarray, costs: np.ndarray, blocked: np.ndarray) -> Optional[int]:
    free = ~overlaps(rects, blocked)
    if not free.any():
        return None
    candidates = np.flatnonzero(free)
    return int(candidates[np.argmin(costs[candidates])])


def _place_one(index: int, boxes: np.ndarray, w: float, h: float, area: Rect, blocked: np.ndarray,
               search_steps: int) -> Optional[np.ndarray]:
    box = boxes[index]
    near = _to_rects(_adjacent(box, w, h), w, h, area)
    near_costs = _costs(near, index, boxes, h, 0.5, 0.05 * np.arange(len(near)))
    best = _best_free(near, near_costs, blocked)
    if best is not None and near_costs[best] <= GRID_PREFERENCE:
        return near[best]
    step, reach = h / 2, search_steps * h / 2
    searches = [_grid(box[0] - w - reach, box[2] + reach, box[1] - h - reach, box[3] + reach, step),
                _grid(area[0], area[2] - w, area[1], area[3] - h, h)]
    for corners in searches:
        rects = np.concatenate([near, _to_rects(corners, w, h, area)])
        costs = np.concatenate([near_costs, _costs(rects[len(near):], index, boxes, h, 2.0,
                                                   np.full(len(corners), GRID_PREFERENCE))])
        best = _best_free(rects, costs, blocked)
        if best is not None:
            return rects[best]
    return None


def place_labels(boxes: np.ndarray, sizes: np.ndarray, area: Rect, *, order: Optional[Sequence[int]] = None,
                 obstacles: Optional[np.ndarray] = None, spacing: float = 1.0,
                 search_steps: int = 12) -> List[Optional[LabelPlacement]]:
    """Place one label per box so that no two labels overlap (see the module docstring).

    Args:
        boxes: ``[N, 4]`` boxes the labels belong to (canvas pixels).
        sizes: ``[N, 2]`` label (width, height).
        area: rectangle every label must stay inside (the image).
        order: box indices in placement order (best first); boxes not in it get no label.
        obstacles: ``[M, 4]`` rectangles no label may overlap (the legend).
        spacing: minimum free pixels between two labels.
        search_steps: how far (in half label heights) the shifted search goes around a box.

    Returns:
        one :class:`LabelPlacement` per box, ``None`` where no label was placed.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # [N, 4]
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)  # [N, 2]
    order = range(len(boxes)) if order is None else order
    blocked = [np.asarray(obstacles, dtype=np.float64).reshape(-1, 4)] if obstacles is not None else []
    out: List[Optional[LabelPlacement]] = [None] * len(boxes)
    for index in order:
        w, h = sizes[index]
        taken = np.concatenate(blocked) if blocked else np.zeros((0, 4))
        taken = taken + np.array([-spacing, -spacing, spacing, spacing])  # keep labels apart
        rect = _place_one(index, boxes, float(w), float(h), area, taken, search_steps)
        if rect is None:
            continue
        blocked.append(rect[None])
        out[index] = LabelPlacement(tuple(float(v) for v in rect), _leader(rect, boxes[index], spacing + 1))
    return out


def _column(sizes: np.ndarray, x: float, y: float, pad: float, gap: float) -> Tuple[Rect, List[Rect]]:
    entries, top = [], y + pad
    for w, h in sizes:
        entries.append((x + pad, top, x + pad + w, top + h))
        top += h + gap
    width = float(sizes[:, 0].max()) + 2 * pad
    return (x, y, x + width, top - gap + pad), entries


def _flow(sizes: np.ndarray, width: float, y: float, pad: float, gap: float) -> Tuple[Rect, List[Rect]]:
    entries, x, top, row_h = [], pad, y + pad, 0.0
    for w, h in sizes:
        if x > pad and x + w > width - pad:
            x, top, row_h = pad, top + row_h + gap, 0.0
        entries.append((x, top, x + w, top + h))
        x, row_h = x + w + 2 * gap, max(row_h, h)
    return (0.0, y, width, top + row_h + pad), entries


def layout_legend(sizes: np.ndarray, boxes: np.ndarray, image_size: Tuple[int, int], *, pad: float, gap: float,
                  max_fraction: float = 0.4) -> LegendLayout:
    """Put the legend in a corner of the image that covers no box, else in a strip below the image.

    The corner legend is one column of entries, tried at top-right, top-left, bottom-right and
    bottom-left; it is used only if it covers no box and fits within ``max_fraction`` of the
    image's width and height. Otherwise the entries flow in rows in a strip added below the
    image, so the image keeps its pixel coordinates (origin at the top left).

    Args:
        sizes: ``[E, 2]`` (width, height) of each legend entry (swatch and text).
        boxes: ``[N, 4]`` detection boxes in image pixels.
        image_size: (width, height) of the image.
    """
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)  # [E, 2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # [N, 4]
    width, height = image_size
    rect, _ = _column(sizes, 0.0, 0.0, pad, gap)
    w, h = rect[2], rect[3]
    if w <= max_fraction * width and h <= max_fraction * height:
        m = pad
        for x, y in ((width - w - m, m), (m, m), (width - w - m, height - h - m), (m, height - h - m)):
            rect, entries = _column(sizes, x, y, pad, gap)
            if not overlaps(np.array([rect]), boxes)[0]:
                return LegendLayout(rect, entries, (int(width), int(height)), in_strip=False)
    strip_w = max(float(width), float(sizes[:, 0].max()) + 2 * pad)
    rect, entries = _flow(sizes, strip_w, float(height), pad, gap)
    return LegendLayout(rect, entries, (int(np.ceil(strip_w)), int(np.ceil(rect[3]))), in_strip=True)
