"""evaluate_detections / run_detector_on_dataset / format_ap_table on a tiny in-memory dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from os2d.data.datasets.base import Dataset, SceneRecord
from os2d.eval.detections_io import read_detections, write_detections
from os2d.eval.evaluate import evaluate_detections, format_ap_table, run_detector_on_dataset
from os2d.structures import Detections


def _dataset():
    images = [
        SceneRecord("1", "a.jpg", Path("/x/a.jpg"), np.array([[0, 0, 10, 10], [20, 20, 30, 30]]),
                    ["cat", "dog"], np.array([False, False]), size=(40, 40)),
        SceneRecord("2", "b.jpg", Path("/x/b.jpg"), np.array([[5, 5, 15, 15]]), ["cat"], np.array([True]),
                    size=(40, 40)),
    ]
    return Dataset("toy", ["cat", "dog", "emu"],
                   {c: [Path(f"/x/{c}.png")] for c in ("cat", "dog", "emu")}, images)


def _rec(image, cls, score, bbox):
    return {"image": image, "class": cls, "score": score, "bbox": bbox}


def test_known_answer_result_dict():
    recs = [
        _rec("a.jpg", "cat", 0.9, [0, 0, 10, 10]),     # TP
        _rec("a.jpg", "dog", 0.8, [0, 0, 10, 10]),     # FP (dog is elsewhere)
        _rec("a.jpg", "dog", 0.7, [20, 20, 30, 30]),   # TP
        _rec("b.jpg", "cat", 0.95, [5, 5, 15, 15]),    # on a difficult box: ignored
    ]
    res = evaluate_detections(_dataset(), recs)
    assert res["ap_per_class"] == {"cat": 1.0, "dog": 0.5, "emu": None}
    assert res["map"] == 0.75 and res["recall"] == 1.0
    assert res["n_pos"] == {"cat": 1, "dog": 1, "emu": 0}
    assert res["num_images"] == 2 and res["num_detections"] == 4 and res["num_classes"] == 3
    assert res["ap_joint_classes"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # TP, FP, TP


def test_no_detections():
    res = evaluate_detections(_dataset(), [])
    assert res["map"] == 0.0 and res["recall"] == 0.0


def test_classes_without_ground_truth_are_ignored(caplog):
    recs = [_rec("a.jpg", "cat", 0.9, [0, 0, 10, 10]), _rec("a.jpg", "dog", 0.7, [20, 20, 30, 30])]
    extra = [_rec("a.jpg", "cow", 0.99, [0, 0, 10, 10]), _rec("b.jpg", "c06", 0.5, [0, 0, 5, 5])]
    with caplog.at_level("WARNING"):
        res = evaluate_detections(_dataset(), recs + extra)
    plain = evaluate_detections(_dataset(), recs)
    assert res["map"] == plain["map"] == 1.0 and res["ap_per_class"] == plain["ap_per_class"]
    assert res["ignored_detections"] == 2 and res["ignored_classes"] == ["c06", "cow"]
    assert res["num_detections"] == 2 and plain["ignored_detections"] == 0
    assert "ignored 2 detections of 2 classes without ground truth" in caplog.text


def test_error_unknown_image():
    with pytest.raises(ValueError, match="image 'z.jpg' is not in the dataset"):
        evaluate_detections(_dataset(), [_rec("z.jpg", "cat", 0.9, [0, 0, 1, 1])])


def _detect(path: Path) -> Detections:
    if path.name == "a.jpg":
        return Detections(torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), torch.tensor([0.9, 0.8]),
                          torch.tensor([0, 1]), ["cat", "dog"], image_name="ignored")
    return Detections.empty(["cat", "dog"])


def test_run_detector_then_save_load_evaluate(tmp_path):
    records = run_detector_on_dataset(_dataset(), _detect, progress=False)
    assert [r["image"] for r in records] == ["a.jpg", "a.jpg"]
    path = write_detections(records, tmp_path / "det.json")
    res = evaluate_detections(_dataset(), read_detections(path))
    assert res["map"] == 1.0


def test_error_detect_fn_wrong_return_type():
    with pytest.raises(TypeError, match="detect_fn must return Detections, got list"):
        run_detector_on_dataset(_dataset(), lambda p: [], progress=False)


def test_format_ap_table():
    res = evaluate_detections(_dataset(), [_rec("a.jpg", "cat", 0.9, [0, 0, 10, 10])])
    table = format_ap_table(res)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "AP", "recall", "#gt"]
    assert lines[2].split() == ["cat", "100.0", "100.0", "1"]
    assert lines[3].split() == ["dog", "0.0", "0.0", "1"]
    assert lines[4].split() == ["emu", "-", "-", "0"]
    assert lines[6].split()[:3] == ["mAP", "50.0", "50.0"]
    assert "toy: 2 images, 3 classes, 1 detections" in table
