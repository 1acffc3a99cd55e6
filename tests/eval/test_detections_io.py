"""Detections JSON: validation, atomic writing, grouping for the evaluator."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from os2d.eval.detections_io import (
    read_detections, records_from_detections, records_to_predictions, validate_record, write_detections,
)
from os2d.structures import Detections

REC = {"image": "a.jpg", "class": "cat", "score": 0.5, "bbox": [1, 2, 3, 4]}


def test_round_trip_and_no_temporary_left(tmp_path):
    path = write_detections([REC, dict(REC, score=1)], tmp_path / "d.json")
    assert read_detections(path) == [dict(REC, bbox=[1.0, 2.0, 3.0, 4.0]), dict(REC, score=1.0, bbox=[1.0, 2.0, 3.0, 4.0])]
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("old")
    write_detections([], path)
    assert json.loads(path.read_text()) == []


def test_invalid_records_are_not_written(tmp_path):
    with pytest.raises(ValueError, match="detection 0: missing keys"):
        write_detections([{"image": "a.jpg"}], tmp_path / "d.json")
    assert not list(tmp_path.iterdir())


def test_error_write_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_detections([REC], tmp_path / "no" / "d.json")


def test_error_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="detections file not found"):
        read_detections(tmp_path / "none.json")


def test_error_read_invalid_json(tmp_path):
    (tmp_path / "d.json").write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_detections(tmp_path / "d.json")


def test_error_read_not_a_list(tmp_path):
    (tmp_path / "d.json").write_text('{"image": "a.jpg"}')
    with pytest.raises(ValueError, match="must be a list"):
        read_detections(tmp_path / "d.json")


def test_error_nan_score_names_the_file(tmp_path):
    (tmp_path / "d.json").write_text('[{"image": "a", "class": "c", "score": NaN, "bbox": [0, 0, 1, 1]}]')
    with pytest.raises(ValueError, match=r"d.json: detection 0: 'score' must be a finite number"):
        read_detections(tmp_path / "d.json")


def test_error_bool_score():
    with pytest.raises(ValueError, match="'score'"):
        validate_record(dict(REC, score=True))


def test_error_bbox_length():
    with pytest.raises(ValueError, match="'bbox' must be 4 finite numbers"):
        validate_record(dict(REC, bbox=[0, 0, 1]))


def test_error_inverted_bbox():
    with pytest.raises(ValueError, match="x2 < x1"):
        validate_record(dict(REC, bbox=[5, 0, 1, 1]))


def test_error_empty_class_name():
    with pytest.raises(ValueError, match="'class' must be a non-empty string"):
        validate_record(dict(REC, **{"class": ""}))


def test_records_to_predictions_groups_by_image():
    recs = [REC, dict(REC, image="b.jpg", score=0.25, **{"class": "dog"})]
    preds = records_to_predictions(recs, file_names=["a.jpg", "b.jpg", "c.jpg"], class_names=["dog", "cat"])
    assert [len(p.labels) for p in preds] == [1, 1, 0]
    assert preds[0].labels.tolist() == [1] and preds[1].scores.tolist() == [0.25]
    np.testing.assert_array_equal(preds[0].boxes, [[1, 2, 3, 4]])


def test_unknown_class_is_ignored_with_a_warning(caplog):
    other = dict(REC, **{"class": "cow"})
    dog = dict(REC, **{"class": "dog"})
    with caplog.at_level("WARNING", logger="os2d.eval.detections_io"):
        preds = records_to_predictions([REC, other, other, dog], file_names=["a.jpg"], class_names=["dog"])
    assert preds[0].labels.tolist() == [0]  # only the dog record is evaluated
    assert "ignored 3 detections of 2 classes without ground truth" in caplog.text
    assert "'cat', 'cow'" in caplog.text


def test_error_unknown_image():
    with pytest.raises(ValueError, match="image 'a.jpg' is not in the dataset"):
        records_to_predictions([REC], file_names=["b.jpg"], class_names=["cat"])


def test_records_from_detections():
    dets = Detections(torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([0.5]), torch.tensor([1]),
                      ["dog", "cat"], image_name="a.jpg")
    assert records_from_detections([dets]) == [REC | {"bbox": [1.0, 2.0, 3.0, 4.0]}]
    with pytest.raises(TypeError, match="expected Detections"):
        records_from_detections([REC])
