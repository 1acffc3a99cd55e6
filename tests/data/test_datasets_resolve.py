"""resolve_dataset: folders, CSV and JSON files, names under data_root, errors."""
from __future__ import annotations

import json

import pytest

from test_datasets_support import TOY_ROWS, make_os2d_dataset, write_image
from os2d.data.datasets.resolve import resolve_dataset


def test_folder_csv_and_name_under_data_root(tmp_path):
    csv_path = make_os2d_dataset(tmp_path / "toy", TOY_ROWS)
    assert len(resolve_dataset(str(tmp_path / "toy"))) == 2
    assert len(resolve_dataset(str(csv_path), split="train")) == 1
    assert resolve_dataset("toy", data_root=tmp_path, split="val").num_boxes == 2


def test_coco_json_and_folder_with_one_json(tmp_path):
    write_image(tmp_path / "s.png", (10, 10))
    write_image(tmp_path / "q.png", (4, 4))
    data = {"images": [{"id": 1, "file_name": "s.png", "width": 10, "height": 10}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
            "categories": [{"id": 1, "name": "q", "class_image": "q.png"}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    assert resolve_dataset(str(tmp_path / "a.json")).class_names == ["q"]
    assert resolve_dataset(str(tmp_path), cache_dir=tmp_path / "c").num_boxes == 1


def test_error_unknown_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset 'nothing' not found"):
        resolve_dataset("nothing", data_root=tmp_path)


def test_error_folder_without_annotations(tmp_path):
    with pytest.raises(ValueError, match="neither classes/<name>.csv nor a single COCO"):
        resolve_dataset(str(tmp_path))


def test_error_folder_with_several_csvs(tmp_path):
    make_os2d_dataset(tmp_path, TOY_ROWS, csv_name="one.csv")
    make_os2d_dataset(tmp_path, TOY_ROWS, csv_name="two.csv")
    with pytest.raises(ValueError, match="several annotation CSVs"):
        resolve_dataset(str(tmp_path))


def test_error_unsupported_file(tmp_path):
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="expected .csv or .json"):
        resolve_dataset(str(tmp_path / "x.txt"))
