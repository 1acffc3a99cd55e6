"""Tests of os2d.train.targets: box encoding, anchor assignment, target remapping."""
from __future__ import annotations

import math

import pytest
import torch

from os2d.ops.boxes import encode_boxes
from os2d.train.targets import (
    AnchorTargets,
    assign_targets,
    assign_targets_batch,
    remap_recognition_targets,
    remap_recognition_targets_batch,
)


def _random_boxes(n: int, generator: torch.Generator, min_size: float = 1.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 500
    wh = min_size + torch.rand(n, 2, generator=generator, dtype=torch.float64) * 200
    return torch.cat([xy, xy + wh], dim=1)


# ------------------------------------------------------------------------------------------ assignment
ANCHORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],  # a0
    [10.0, 0.0, 20.0, 10.0],  # a1
    [0.0, 10.0, 10.0, 20.0],  # a2
    [20.0, 20.0, 30.0, 30.0],  # a3
])
GT_BOXES = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],  # g0 class 0: IoU(a0) = 1
    [10.0, 0.0, 18.0, 10.0],  # g1 class 1: IoU(a1) = 80 / 100 = 0.8
    [0.0, 13.0, 10.0, 23.0],  # g2 class 1, difficult: IoU(a2) = 70 / 130 = 0.54
    [0.0, 0.0, 10.0, 3.0],  # g3 class 2: IoU(a0) = 30 / 100 = 0.3 -> between thresholds
])
GT_LABELS = torch.tensor([0, 1, 1, 2])
GT_DIFFICULT = torch.tensor([False, False, True, False])


def test_assign_targets_known_answer():
    t = assign_targets(ANCHORS, GT_BOXES, GT_LABELS, GT_DIFFICULT, 4)  # class 3 has no GT
    assert t.loc_targets.shape == (4, 4, 4) and t.labels.shape == (4, 4)
    assert t.labels.dtype == torch.int8 and t.loc_mask.dtype == torch.bool
    assert t.matched_gt.dtype == torch.long
    expected_labels = torch.tensor([
        [1, 0, 0, 0],
        [0, 1, -1, 0],  # a2 best-matches the difficult g2 -> ignored
        [-1, 0, 0, 0],  # a0 has IoU 0.3 with g3 -> ignored
        [0, 0, 0, 0],  # no GT of class 3 -> all negative
    ], dtype=torch.int8)
    assert torch.equal(t.labels, expected_labels)
    assert torch.equal(t.loc_mask, expected_labels == 1)
    assert torch.equal(t.matched_gt, torch.tensor([
        [0, -1, -1, -1], [-1, 1, 2, -1], [-1, -1, -1, -1], [-1, -1, -1, -1]]))
    torch.testing.assert_close(t.loc_targets[0, :, 0], torch.zeros(4))
    # g1 (centre 14, 5; 8 x 10) w.r.t. a1 (centre 15, 5; 10 x 10)
    torch.testing.assert_close(t.loc_targets[1, :, 1], torch.tensor([-1.0, 0.0, 5 * math.log(0.8), 0.0]))
    assert torch.equal(t.loc_targets[3], torch.zeros(4, 4))
    # the loc targets equal the encoding of the best GT of the class for every anchor of the class
    torch.testing.assert_close(t.loc_targets[0].T, encode_boxes(GT_BOXES[0].expand(4, 4), ANCHORS))


def test_assign_targets_thresholds_and_no_difficult():
    t = assign_targets(ANCHORS, GT_BOXES, GT_LABELS, None, 3)
    assert t.labels[1, 2] == 1 and t.loc_mask[1, 2]  # g2 no longer difficult: IoU 0.54 >= 0.5
    t = assign_targets(ANCHORS, GT_BOXES, GT_LABELS, None, 3, pos_iou=0.81, neg_iou=0.35)
    assert t.labels[1].tolist() == [0, -1, -1, 0]  # IoU 0.8 < 0.81 -> ignored
    assert t.labels[2, 0] == 0  # IoU 0.3 < 0.35 -> negative


def test_assign_targets_empty_gt_and_errors():
    t = assign_targets(ANCHORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                       torch.zeros(0, dtype=torch.bool), 2)
    assert torch.equal(t.labels, torch.zeros(2, 4, dtype=torch.int8))
    assert not t.loc_mask.any() and (t.matched_gt == -1).all() and (t.loc_targets == 0).all()
    with pytest.raises(ValueError, match="0..1"):
        assign_targets(ANCHORS, GT_BOXES, GT_LABELS, GT_DIFFICULT, 2)
    with pytest.raises(ValueError, match="anchors"):
        assign_targets(ANCHORS[None], GT_BOXES, GT_LABELS, GT_DIFFICULT, 3)
    with pytest.raises(ValueError, match="neg_iou"):
        assign_targets(ANCHORS, GT_BOXES, GT_LABELS, GT_DIFFICULT, 3, pos_iou=0.1, neg_iou=0.5)


def test_assign_targets_batch_stacks():
    t = assign_targets_batch(ANCHORS, [GT_BOXES, GT_BOXES[:1]], [GT_LABELS, GT_LABELS[:1]],
                             [GT_DIFFICULT, GT_DIFFICULT[:1]], 3)
    assert isinstance(t, AnchorTargets)
    assert t.loc_targets.shape == (2, 3, 4, 4) and t.labels.shape == (2, 3, 4)
    assert t.loc_mask.shape == (2, 3, 4) and t.matched_gt.shape == (2, 3, 4)
    single = assign_targets(ANCHORS, GT_BOXES[:1], GT_LABELS[:1], GT_DIFFICULT[:1], 3)
    assert torch.equal(t.labels[1], single.labels)
    assert t.labels[1, 1].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="same length"):
        assign_targets_batch(ANCHORS, [GT_BOXES], [], [GT_DIFFICULT], 3)


# ------------------------------------------------------------------------------------------ remapping
def test_remap_recognition_targets_known_answer():
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    gt_labels = torch.tensor([0, 1])
    difficult = torch.tensor([False, True])
    output = torch.tensor([
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 7.0], [0.0, 0.0, 10.0, 3.0]],
        [[20.0, 0.0, 30.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 9.0], [20.0, 0.0, 30.0, 5.0]],
    ])  # [K=2, N=4, 4]; class-0 IoUs 1, 0.8, 0.7, 0.3; class-1 IoUs 1, 0, 0.9, 0.5
    labels = remap_recognition_targets(output, gt_boxes, gt_labels, difficult, 2)
    assert labels.dtype == torch.int8 and labels.shape == (2, 4)
    assert labels.tolist() == [[1, 1, -1, 0], [-1, 0, -1, -1]]
    labels = remap_recognition_targets(output, gt_boxes, gt_labels, None, 2)
    assert labels.tolist() == [[1, 1, -1, 0], [1, 0, 1, -1]]
    # the remapping uses only GTs of the same class: class 1 boxes on the class-0 GT are negatives
    labels = remap_recognition_targets(output, gt_boxes, torch.tensor([0, 0]), None, 2)
    assert labels[1].tolist() == [0, 0, 0, 0]


def test_remap_batch_and_empty_gt():
    output = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]]).expand(2, 3, 1, 4)  # [B=2, K=3, N=1, 4]
    labels = remap_recognition_targets_batch(
        output, [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.zeros(0, 4)],
        [torch.tensor([2]), torch.zeros(0, dtype=torch.long)], None, 3)
    assert labels.shape == (2, 3, 1)
    assert labels[:, :, 0].tolist() == [[0, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="output_boxes"):
        remap_recognition_targets(output[0, 0], torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), None, 3)
