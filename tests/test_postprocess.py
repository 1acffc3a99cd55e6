"""Tests of os2d.postprocess.detect_per_class: decoding, clipping, thresholds, rescaling, per-class NMS."""
from __future__ import annotations

import math

import pytest
import torch

from os2d.ops.boxes import encode_boxes
from os2d.postprocess import ClassDetections, LevelOutput, detect_per_class

ANCHORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],
    [1.0, 1.0, 11.0, 11.0],  # IoU 81/119 = 0.68 with anchor 0
    [20.0, 20.0, 30.0, 30.0],
    [90.0, 90.0, 110.0, 110.0],  # sticks out of the 100 x 100 image
])


def _level(scores, codes=None, anchors=ANCHORS, image_size=(100, 100), scale=(1.0, 1.0), corners=None):
    scores = torch.as_tensor(scores, dtype=torch.float32)
    if codes is None:
        codes = torch.zeros(*scores.shape, 4)
    return LevelOutput(codes=codes, scores=scores, anchors=anchors, image_size=image_size, scale=scale,
                       corners=corners)


def _assert_empty(det: ClassDetections):
    assert det.boxes.shape == (0, 4) and det.scores.shape == (0,)
    assert det.anchors.shape == (0, 4) and det.corners.shape == (0, 4, 2)


def test_zero_codes_nms_clip_and_sort_known_answer():
    level = _level([[0.5, 0.9, 0.7, 0.8]])
    (det,) = detect_per_class([level], [0], num_labels=1)
    # anchor 0 suppressed by anchor 1 (IoU 0.68 > 0.3); anchor 3 clipped to the image
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.8, 0.7]))
    torch.testing.assert_close(det.boxes, torch.tensor([[1.0, 1.0, 11.0, 11.0], [90.0, 90.0, 100.0, 100.0],
                                                        [20.0, 20.0, 30.0, 30.0]]))
    torch.testing.assert_close(det.anchors, ANCHORS[[1, 3, 2]])  # anchors are not clipped
    assert det.corners.shape == (3, 4, 2) and torch.all(det.corners == 0)  # no corners given


def test_codes_are_decoded():
    target = torch.tensor([[12.0, 14.0, 30.0, 24.0]])
    codes = encode_boxes(target, ANCHORS[:1]).view(1, 1, 4)
    level = _level([[0.3]], codes=codes, anchors=ANCHORS[:1])
    (det,) = detect_per_class([level], [0], num_labels=1)
    torch.testing.assert_close(det.boxes, target)


def test_nms_iou_threshold_is_respected():
    level = _level([[0.5, 0.9, 0.7, 0.8]])
    (det,) = detect_per_class([level], [0], num_labels=1, nms_iou=0.7)  # IoU 0.68 is kept now
    assert det.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.5])


def test_score_threshold_is_strict():
    level = _level([[0.5, 0.9, 0.7, 0.8]])
    (det,) = detect_per_class([level], [0], num_labels=1, score_threshold=0.7)
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.8]))


def test_zero_detections_above_threshold():
    level = _level([[0.5, 0.9, 0.7, 0.8]])
    dets = detect_per_class([level], [0], num_labels=1, score_threshold=0.95)
    assert len(dets) == 1
    _assert_empty(dets[0])


def test_empty_anchors():
    level = LevelOutput(codes=torch.zeros(2, 0, 4), scores=torch.zeros(2, 0), anchors=torch.zeros(0, 4),
                        image_size=(50, 40), corners=torch.zeros(2, 0, 4, 2))
    dets = detect_per_class([level], [0, 1], num_labels=2)
    assert len(dets) == 2
    for det in dets:
        _assert_empty(det)


def test_label_without_entries_and_no_levels():
    dets = detect_per_class([_level([[0.5, 0.9, 0.7, 0.8]])], [1], num_labels=3)
    _assert_empty(dets[0])
    _assert_empty(dets[2])
    assert len(dets[1].scores) == 3
    for det in detect_per_class([], [0], num_labels=1):
        _assert_empty(det)


def test_boxes_empty_after_clipping_are_dropped():
    anchors = torch.tensor([[120.0, 10.0, 140.0, 20.0], [10.0, 10.0, 20.0, 20.0]])  # first is outside
    (det,) = detect_per_class([_level([[0.9, 0.1]], anchors=anchors)], [0], num_labels=1)
    torch.testing.assert_close(det.boxes, anchors[1:])


def test_entries_with_one_label_are_merged_before_nms():
    # entry 0 (label 0) finds anchor 1, entry 1 (also label 0) anchor 0, entry 2 (label 1) anchor 0
    scores = torch.tensor([[-1.0, 0.6, -1.0, -1.0], [0.8, -1.0, -1.0, -1.0], [0.4, -1.0, -1.0, -1.0]])
    level = _level(scores)
    dets = detect_per_class([level], [0, 0, 1], num_labels=2, score_threshold=0.0)
    torch.testing.assert_close(dets[0].scores, torch.tensor([0.8]))  # 0.6 suppressed across entries
    torch.testing.assert_close(dets[0].boxes, ANCHORS[:1])
    torch.testing.assert_close(dets[1].scores, torch.tensor([0.4]))  # no NMS across labels


def test_levels_are_rescaled_and_merged():
    corners = torch.arange(32, dtype=torch.float32).view(1, 4, 4, 2)
    full = _level([[0.5, -1.0, -1.0, -1.0]])
    # a half-size level (50 x 50 input) whose pixels are scaled by 2 into output pixels
    half = _level([[-1.0, -1.0, 0.9, -1.0]], image_size=(50, 50), scale=(2.0, 2.0), corners=corners)
    (det,) = detect_per_class([full, half], [0], num_labels=1, score_threshold=0.0)
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.5]))
    torch.testing.assert_close(det.boxes, torch.tensor([[40.0, 40.0, 60.0, 60.0], [0.0, 0.0, 10.0, 10.0]]))
    torch.testing.assert_close(det.anchors[0], torch.tensor([40.0, 40.0, 60.0, 60.0]))
    # one level without corners -> zeros for all (corners are only kept when every level has them)
    assert torch.all(det.corners == 0)
    (only_half,) = detect_per_class([half], [0], num_labels=1, score_threshold=0.0)
    torch.testing.assert_close(only_half.corners[0], corners[0, 2] * 2.0)


def test_anisotropic_scale():
    level = _level([[0.9, -1.0, -1.0, -1.0]], scale=(2.0, 0.5))
    (det,) = detect_per_class([level], [0], num_labels=1, score_threshold=0.0)
    torch.testing.assert_close(det.boxes, torch.tensor([[0.0, 0.0, 20.0, 5.0]]))


def test_huge_size_codes_are_clamped_then_clipped():
    codes = torch.tensor([[[0.0, 0.0, 100.0, 100.0]]])  # dw / 5 = 20 > log(1000 / 16)
    (det,) = detect_per_class([_level([[0.9]], codes=codes, anchors=ANCHORS[2:3])], [0], num_labels=1)
    assert math.isfinite(det.boxes.sum().item())
    torch.testing.assert_close(det.boxes, torch.tensor([[0.0, 0.0, 100.0, 100.0]]))


def test_float64_codes_with_float32_scores():
    """Boxes decoded in float64 and float32 scores go through NMS together (used to raise in nms)."""
    level = _level([[0.5, 0.9, 0.7, 0.8]], codes=torch.zeros(1, 4, 4, dtype=torch.float64),
                   anchors=ANCHORS.double())
    (det,) = detect_per_class([level], [0], num_labels=1)
    assert det.boxes.dtype == torch.float64 and det.scores.dtype == torch.float32
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.8, 0.7]))
