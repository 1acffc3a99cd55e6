"""Tests of os2d.inference.one_label: one class per object, runner-ups reported."""
from __future__ import annotations

import math

import torch

from os2d.inference.candidates import Candidates
from os2d.inference.one_label import one_label


def _cands(boxes, scores):
    n = len(scores)
    return Candidates(boxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(scores),
                      entries=torch.arange(n), levels=torch.zeros(n, dtype=torch.int64), corners=torch.zeros(n, 4, 2),
                      anchors=torch.zeros(n, 4))


def test_overlapping_classes_keep_the_best_and_report_the_runner_up():
    # a facing labelled choco (0.8) and berry (0.6); another facing only berry (0.7); a far box of class 2
    boxes = [[0, 0, 10, 20], [1, 0, 11, 20], [30, 0, 40, 20], [60, 0, 70, 20]]
    labels = torch.tensor([0, 1, 1, 2])
    keep, who, score = one_label(_cands(boxes, [0.8, 0.6, 0.7, 0.2]), labels, iou=0.5)
    assert keep.tolist() == [0, 2, 3]
    assert who.tolist() == [1, -1, -1]
    assert score[0].item() == torch.tensor(0.6).item() and math.isnan(score[1].item())


def test_small_overlaps_keep_both_and_empty_input():
    boxes = [[0, 0, 10, 10], [8, 0, 18, 10]]  # IoU 2/18
    keep, who, _ = one_label(_cands(boxes, [0.9, 0.5]), torch.tensor([0, 1]), iou=0.5)
    assert keep.tolist() == [0, 1] and who.tolist() == [-1, -1]
    keep, who, score = one_label(Candidates.empty(), torch.zeros(0, dtype=torch.int64), iou=0.5)
    assert keep.numel() == who.numel() == score.numel() == 0


def test_the_best_runner_up_of_several():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10.5, 10]]
    keep, who, score = one_label(_cands(boxes, [0.9, 0.4, 0.7]), torch.tensor([0, 1, 2]), iou=0.5)
    assert keep.tolist() == [0] and who.tolist() == [2] and abs(score.item() - 0.7) < 1e-6
