"""One label per object: where boxes of different classes overlap strongly, keep the best class.

After the per-class NMS a shelf facing can still carry one box per similar class (two flavours of
a brand). :func:`one_label` runs a class-agnostic greedy NMS (IoU > ``iou``) over the final
candidates, in decreasing score order -- scores must be comparable across classes, i.e. calibrated
-- and reports, for every kept detection, the best suppressed *other* class on it: its label and
score (``runner_up_label`` = -1 when nothing else was there).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torchvision.ops import box_iou, nms

from os2d.inference.candidates import Candidates


def one_label(cands: Candidates, labels: torch.Tensor, *, iou: float, rank: Optional[torch.Tensor] = None
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kept indices by decreasing score, runner-up label ``Tensor[M]``, runner-up score ``Tensor[M]``).

    Args:
        cands: candidates (any order); labels: ``Tensor[N]`` class of each.
        iou: boxes overlapping a better one of another class by more than this are suppressed.
        rank: the values deciding which of overlapping boxes wins (default: the scores).
    """
    n = len(cands)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone(), torch.zeros(0)
    order_by = cands.scores if rank is None else rank
    keep = nms(cands.boxes, order_by.to(cands.boxes.dtype), iou)
    keep = keep[torch.sort(cands.scores[keep], descending=True, stable=True).indices]
    gone = torch.ones(n, dtype=torch.bool)
    gone[keep] = False
    runner_label = torch.full((keep.numel(),), -1, dtype=torch.int64)
    runner_score = torch.full((keep.numel(),), float("nan"))
    lost = gone.nonzero().squeeze(1)
    if lost.numel():
        overlap = box_iou(cands.boxes[lost], cands.boxes[keep]) > iou
        # [L, M]
        other = labels[lost][:, None] != labels[keep][None, :]
        score = torch.where(overlap & other, cands.scores[lost][:, None], torch.tensor(-float("inf")))
        best, which = score.max(dim=0)
        # [M]
        has = torch.isfinite(best)
        runner_label[has] = labels[lost][which[has]]
        runner_score[has] = best[has]
    return keep, runner_label, runner_score


def rank_by_color(image, cands: Candidates, labels: torch.Tensor, colors: Optional[torch.Tensor], *, weight: float,
                  iou: float) -> Optional[torch.Tensor]:
    """Scores plus ``weight`` x colour similarity of box and class, for the boxes that another class
    claims too (:mod:`os2d.inference.verify`); ``None`` when there is nothing to decide."""
    if weight <= 0 or colors is None or len(cands) < 2:
        return None
    overlap = box_iou(cands.boxes, cands.boxes) > iou
    contested = (overlap & (labels[:, None] != labels[None, :])).any(1)
    if not bool(contested.any()):
        return None
    from os2d.inference.verify import box_signatures, color_similarity

    idx = contested.nonzero().squeeze(1)
    sims = color_similarity(box_signatures(image, cands.boxes[idx]), colors[cands.entries[idx]])
    rank = cands.scores.clone()
    rank[idx] = rank[idx] + weight * sims
    return rank
