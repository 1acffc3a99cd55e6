"""One label per object: where boxes of different classes overlap strongly, keep the best class.

After the per-class NMS a shelf facing can still carry one box per similar class (two flavours of
a brand). :func:`one_label` runs a class-agnostic greedy NMS (IoU > ``iou``) over the final
candidates, in decreasing score order -- scores must be comparable across classes, i.e. calibrated
-- and reports, for every kept detection, the best suppressed *other* class on it: its label and
score (``runner_up_label`` = -1 when nothing else was there).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torchvision.ops import box_iou, nms

from os2d.inference.candidates import Candidates


def one_label(cands: Candidates, labels: torch.Tensor, *, iou: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kept indices by decreasing score, runner-up label ``Tensor[M]``, runner-up score ``Tensor[M]``).

    Args:
        cands: candidates (any order); labels: ``Tensor[N]`` class of each.
        iou: boxes overlapping a better one of another class by more than this are suppressed.
    """
    n = len(cands)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone(), torch.zeros(0)
    keep = nms(cands.boxes, cands.scores.to(cands.boxes.dtype), iou)
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
