"""VOC AP: parity with the reference fixtures and hand-computed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from os2d.eval.voc import ImageGT, ImagePred, average_precision, rescale_boxes, voc_evaluation

FIXTURES = ["case1_basic.json", "case2_edge.json", "case3_random.json", "case4_pred_rescale.json"]
FIELDS = ["ap_per_class", "map", "map_weighted", "recall", "recall_per_class", "n_pos", "ap_joint_classes"]


def _load_case(path):
    data = json.loads(path.read_text())
    gts = [ImageGT(im["gt_boxes_xyxy"], im["gt_labels"], im["gt_difficult"], tuple(im["gt_image_size_wh"]))
           for im in data["images"]]
    preds = [ImagePred(im["pred_boxes_xyxy"], im["pred_labels"], im["pred_scores"], tuple(im["pred_image_size_wh"]))
             for im in data["images"]]
    return gts, preds, data["reference_results"]


@pytest.mark.parametrize("name", FIXTURES)
def test_reference_fixtures_all_settings_all_fields(shared, name):
    gts, preds, references = _load_case(shared("fixtures", "reference", "map", name))
    assert len(references) == 4
    for ref in references:
        got = voc_evaluation(gts, preds, iou_thresh=ref["iou_thresh"], use_07_metric=ref["use_07_metric"]).to_dict()
        for key in FIELDS:
            expected = np.array(ref[key], dtype=float)  # None -> NaN
            actual = np.array(got[key], dtype=float)
            np.testing.assert_allclose(actual, expected, atol=1e-6, rtol=0, equal_nan=True,
                                       err_msg=f"{name} {ref['iou_thresh']} {ref['use_07_metric']} {key}")


def _gt(boxes, labels, difficult=None, size=None):
    return ImageGT(np.array(boxes, dtype=float).reshape(-1, 4), labels, difficult, size)


def _pred(boxes, labels, scores, size=None):
    return ImagePred(np.array(boxes, dtype=float).reshape(-1, 4), labels, scores, size)


A, B = [0, 0, 10, 10], [20, 20, 30, 30]


def test_no_detections_gives_zero_ap_and_recall():
    r = voc_evaluation([_gt([A, B], [0, 0])], [_pred([], [], [])])
    assert r.ap_per_class.tolist() == [0.0]
    assert r.map == 0.0 and r.recall == 0.0 and r.n_pos.tolist() == [2]
    assert r.ap_joint_classes == 0.0


def test_all_difficult_class_is_nan_and_left_out_of_map():
    gt = _gt([A, B], [0, 1], difficult=[False, True])
    pred = _pred([A, B], [0, 1], [0.9, 0.8])
    r = voc_evaluation([gt], [pred])
    assert r.ap_per_class[0] == 1.0 and np.isnan(r.ap_per_class[1])
    assert r.map == 1.0 and r.n_pos.tolist() == [1, 0]
    assert np.isnan(r.recall_per_class[1]) and r.recall == 1.0


def test_duplicate_detection_is_false_positive():
    # ranks: TP (A), FP (dup of A), TP (B): P = [1, 1/2, 2/3], R = [1/2, 1/2, 1]
    gt = _gt([A, B], [0, 0])
    pred = _pred([A, A, B], [0, 0, 0], [0.9, 0.8, 0.7])
    r = voc_evaluation([gt], [pred])
    assert r.ap_per_class[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    r07 = voc_evaluation([gt], [pred], use_07_metric=True)
    assert r07.ap_per_class[0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_unsorted_scores_give_the_same_result():
    gt = _gt([A, B], [0, 0])
    ordered = voc_evaluation([gt], [_pred([A, A, B], [0, 0, 0], [0.9, 0.8, 0.7])])
    shuffled = voc_evaluation([gt], [_pred([B, A, A], [0, 0, 0], [0.7, 0.8, 0.9])])
    assert shuffled.ap_per_class[0] == ordered.ap_per_class[0]


def test_taken_argmax_gt_makes_detection_false_positive_even_if_other_gt_free():
    g1, g2 = [0, 0, 10, 10], [3, 0, 13, 10]
    det = [1, 0, 11, 10]  # IoU (+1 convention) with g1 = 110/132, with g2 = 99/143 >= 0.5
    r = voc_evaluation([_gt([g1, g2], [0, 0])], [_pred([det, det], [0, 0], [0.9, 0.8])])
    assert r.recall == 0.5  # second detection is FP although g2 is free
    assert r.ap_per_class[0] == pytest.approx(0.5)


def test_plus_one_pixel_convention_moves_iou_to_threshold():
    # without +1: IoU = 2/6; with +1 (3x3 boxes offset by 1): IoU = 6/12 = 0.5 -> TP
    r = voc_evaluation([_gt([[0, 0, 2, 2]], [0])], [_pred([[1, 0, 3, 2]], [0], [0.5])])
    assert r.ap_per_class[0] == 1.0


def test_detection_on_difficult_box_is_ignored():
    gt = _gt([A, B], [0, 0], difficult=[True, False])
    r = voc_evaluation([gt], [_pred([A, B], [0, 0], [0.9, 0.8])])
    assert r.ap_per_class[0] == 1.0 and r.n_pos.tolist() == [1]


def test_empty_classes_with_explicit_num_classes():
    r = voc_evaluation([_gt([A], [0])], [_pred([A], [0], [0.5])], num_classes=3)
    assert r.ap_per_class[0] == 1.0 and np.isnan(r.ap_per_class[1:]).all()
    assert r.n_pos.tolist() == [1, 0, 0] and r.map == 1.0
    assert r.to_dict()["ap_per_class"] == [1.0, None, None]


def test_class_with_detections_but_no_gt_is_nan():
    r = voc_evaluation([_gt([A], [0])], [_pred([A, B], [0, 1], [0.9, 0.95])])
    assert np.isnan(r.ap_per_class[1]) and r.map == 1.0
    assert r.ap_joint_classes == pytest.approx(0.5)  # FP (class 1) ranked before the TP


def test_empty_image_list():
    r = voc_evaluation([], [], num_classes=2)
    assert np.isnan(r.ap_per_class).all() and np.isnan(r.map) and np.isnan(r.recall)
    assert r.n_pos.tolist() == [0, 0] and np.isnan(r.ap_joint_classes)
    assert voc_evaluation([], []).ap_per_class.shape == (0,)


def test_predictions_rescaled_to_gt_size():
    gt = _gt([[10, 10, 20, 30]], [0], size=(100, 100))
    pred = _pred([[20, 10, 40, 30]], [0], [1.0], size=(200, 100))
    assert voc_evaluation([gt], [pred]).ap_per_class[0] == 1.0
    scaled = rescale_boxes(np.array([[20, 10, 40, 30]]), from_size=(200, 100), to_size=(100, 100))
    assert scaled.tolist() == [[10.0, 10.0, 20.0, 30.0]]


def test_iou_threshold_parameter():
    gt = _gt([[0, 0, 9, 9]], [0])
    pred = _pred([[0, 0, 9, 4]], [0], [1.0])  # IoU with +1: 50/100 = 0.5
    assert voc_evaluation([gt], [pred], iou_thresh=0.5).ap_per_class[0] == 1.0
    assert voc_evaluation([gt], [pred], iou_thresh=0.75).ap_per_class[0] == 0.0


def test_average_precision_known_values():
    prec, rec = np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])
    assert average_precision(prec, rec) == pytest.approx(5 / 6)
    assert np.isnan(average_precision(prec, None))
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_error_mismatched_lengths():
    with pytest.raises(ValueError, match="1 ground-truth images but 0"):
        voc_evaluation([_gt([A], [0])], [])


def test_error_wrong_types():
    with pytest.raises(TypeError, match="ImageGT and ImagePred"):
        voc_evaluation([{"boxes": []}], [_pred([], [], [])])


def test_error_bad_box_shape():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        ImageGT(np.zeros((2, 3)), [0, 0])


def test_error_label_count_mismatch():
    with pytest.raises(ValueError, match="expected 2 values"):
        ImagePred(np.zeros((2, 4)), [0], [0.1, 0.2])


def test_error_nan_score():
    with pytest.raises(ValueError, match="finite"):
        ImagePred(np.zeros((1, 4)), [0], [float("nan")])


def test_error_negative_label():
    with pytest.raises(ValueError, match="labels must be >= 0"):
        voc_evaluation([_gt([A], [-1])], [_pred([], [], [])])


def test_error_label_out_of_range():
    with pytest.raises(ValueError, match="num_classes=1"):
        voc_evaluation([_gt([A], [2])], [_pred([], [], [])], num_classes=1)


def test_error_bad_iou_threshold():
    with pytest.raises(ValueError, match="iou_thresh"):
        voc_evaluation([], [], iou_thresh=0.0)
