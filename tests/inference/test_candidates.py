"""Tests of os2d.inference.candidates: level outputs -> candidates, per-class NMS (global and the
reference's chunked NMS), per-class limits, final ordering."""
from __future__ import annotations

import pytest
import torch

from os2d.inference.candidates import Candidates, finalize, level_candidates, reduce_per_class
from os2d.inference.settings import DetectSettings
from os2d.ops.boxes import reference_nms

BOXES = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],
    [1.0, 1.0, 11.0, 11.0],  # IoU 81/119 = 0.68 with box 0
    [20.0, 20.0, 30.0, 30.0],
    [90.0, 90.0, 110.0, 110.0],  # sticks out of the 100 x 100 image
])
CENTERS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def _cands(scores, *, boxes=BOXES, entries=None, level=0, size=(100, 100), scale=(1.0, 1.0), threshold=-1e9,
           corners=None):
    scores = torch.as_tensor(scores, dtype=torch.float32)
    n = scores.numel()
    return level_candidates(
        scores=scores, boxes=boxes[:n], corners=torch.zeros(n, 4, 2) if corners is None else corners,
        centers=CENTERS[:n] if n <= 4 else torch.zeros(n, 2), entries=torch.zeros(n, dtype=torch.int64) if entries is None else torch.tensor(entries),
        level=level, level_size=size, scale=scale, stride=16, anchor_size=240.0, score_threshold=threshold)


def _settings(**kw):
    return DetectSettings(**{"score_threshold": float("-inf"), "max_detections": 1000, **kw})


def test_nms_clip_and_sort_known_answer():
    c = reduce_per_class(_cands([0.5, 0.9, 0.7, 0.8]), torch.tensor([0]), _settings())
    done = finalize(c, torch.tensor([0]), _settings())
    # box 0 suppressed by box 1 (IoU 0.68 > 0.3); box 3 clipped to the image
    torch.testing.assert_close(done.cands.scores, torch.tensor([0.9, 0.8, 0.7]))
    torch.testing.assert_close(done.cands.boxes, torch.tensor([[1.0, 1.0, 11.0, 11.0], [90.0, 90.0, 100.0, 100.0],
                                                               [20.0, 20.0, 30.0, 30.0]]))
    # anchors: 240 px squares centred at ((col + 0.5) * 16, (row + 0.5) * 16), not clipped
    torch.testing.assert_close(done.cands.anchors[0], torch.tensor([-96.0, -112.0, 144.0, 128.0]))


def test_nms_iou_threshold_is_respected():
    c = reduce_per_class(_cands([0.5, 0.9, 0.7, 0.8]), torch.tensor([0]), _settings(nms_iou=0.7))
    assert sorted(c.scores.tolist(), reverse=True) == [0.8999999761581421, 0.800000011920929, 0.699999988079071, 0.5]


def test_score_threshold_is_strict_and_empty_results():
    assert _cands([0.5, 0.9, 0.7, 0.8], threshold=0.7).scores.tolist() == [0.8999999761581421, 0.800000011920929]
    empty = _cands([0.5, 0.9, 0.7, 0.8], threshold=0.95)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.corners.shape == (0, 4, 2)
    assert len(reduce_per_class(empty, torch.tensor([0]), _settings())) == 0
    assert len(finalize(Candidates.empty(), torch.tensor([0]), _settings()).cands) == 0


def test_boxes_empty_after_clipping_are_dropped_and_tiny_boxes_enlarged():
    boxes = torch.tensor([[120.0, 10.0, 140.0, 20.0], [10.0, 10.0, 20.0, 20.0], [50.0, 50.0, 50.2, 60.0]])
    c = _cands([0.9, 0.1, 0.5], boxes=boxes)
    # the first box lies outside; the 0.2 px wide one is enlarged about its centre to 1 px (as decoding does)
    torch.testing.assert_close(c.boxes, torch.tensor([[10.0, 10.0, 20.0, 20.0], [49.6, 50.0, 50.6, 60.0]]))


def test_entries_with_one_label_are_merged_before_nms():
    # entry 0 (label 0) at box 1, entry 1 (label 0) at box 0, entry 2 (label 1) at box 0
    boxes = torch.stack([BOXES[1], BOXES[0], BOXES[0]])
    c = _cands([0.6, 0.8, 0.4], boxes=boxes, entries=[0, 1, 2])
    done = finalize(reduce_per_class(c, torch.tensor([0, 0, 1]), _settings()), torch.tensor([0, 0, 1]), _settings())
    assert done.cands.scores.tolist() == [0.800000011920929, 0.4000000059604645]  # 0.6 suppressed across entries
    assert done.labels.tolist() == [0, 1]  # no NMS across labels


def test_levels_are_rescaled():
    corners = torch.arange(8, dtype=torch.float32).view(1, 4, 2)
    half = _cands([0.9], boxes=torch.tensor([[20.0, 20.0, 30.0, 30.0]]), size=(50, 50), scale=(2.0, 2.0),
                  corners=corners, level=1)
    torch.testing.assert_close(half.boxes, torch.tensor([[40.0, 40.0, 60.0, 60.0]]))
    torch.testing.assert_close(half.corners[0], corners[0] * 2.0)
    torch.testing.assert_close(half.anchors[0], torch.tensor([-224.0, -224.0, 256.0, 256.0]))
    assert half.levels.tolist() == [1]
    aniso = _cands([0.9], boxes=BOXES[:1], scale=(2.0, 0.5))
    torch.testing.assert_close(aniso.boxes, torch.tensor([[0.0, 0.0, 20.0, 5.0]]))


def test_max_detections_per_class_and_overall():
    boxes = torch.tensor([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(6)])
    c = _cands(torch.linspace(0.1, 0.6, 6), boxes=boxes, entries=[0, 0, 0, 1, 1, 1])
    labels = torch.tensor([0, 1])
    two = reduce_per_class(c, labels, _settings(max_detections=2))
    assert sorted(two.scores.tolist()) == pytest.approx([0.2, 0.3, 0.5, 0.6])
    done = finalize(two, labels, _settings(max_detections=3))
    assert done.labels.tolist() == [1, 1, 0]


def test_reference_nms_known_answer_with_chunks():
    """Chunks of 2 boxes, in the given order: [A, B] keeps A (B overlaps A), [C, D] keeps D (C overlaps D);
    the second pass [A, D] keeps both since they do not overlap -- one global NMS would also keep C's
    suppressor D only; the chunking makes B survive nowhere but C and B are both gone."""
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0],
                          [51.0, 51.0, 61.0, 61.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert reference_nms(boxes, scores, iou=0.3, max_batch=2).tolist() == [3, 0]
    assert reference_nms(boxes, scores, iou=0.3).tolist() == [3, 0]


def test_reference_nms_differs_from_global_when_a_suppressor_is_in_another_chunk():
    """Global NMS: C (0.9) suppresses B (0.8), then A (0.7) survives. Chunks [A, B], [C]: A is suppressed by
    B inside the first chunk; the second pass [B, C] suppresses B: only C is left."""
    a, b, c = [0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0], [8.0, 0.0, 18.0, 10.0]
    boxes = torch.tensor([a, b, c])
    scores = torch.tensor([0.7, 0.8, 0.9])
    assert reference_nms(boxes, scores, iou=0.3, max_batch=2).tolist() == [2]
    settings = _settings()
    cands = _cands(scores, boxes=boxes)
    assert sorted(reduce_per_class(cands, torch.tensor([0]), settings).scores.tolist()) == [0.699999988079071,
                                                                                           0.8999999761581421]


def test_reference_mode_orders_candidates_by_entry_then_level():
    """The reference concatenates per class entry, then per level, before its chunked NMS."""
    level1 = _cands([0.9], boxes=BOXES[:1], entries=[1], level=1)
    level0 = _cands([0.8], boxes=BOXES[1:2], entries=[0], level=0)
    mixed = Candidates.cat([level1, level0])
    out = reduce_per_class(mixed, torch.tensor([0, 0]), _settings(nms_mode="reference"))
    assert out.scores.tolist() == [0.8999999761581421]  # the same survivors as the global NMS here
