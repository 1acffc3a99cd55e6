"""Issue 11 regressions for dataset files: messages name the file and the offending row/field."""
from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from os2d.data.datasets import read_coco, read_os2d_csv
from os2d.errors import InputTooLargeError, InvalidInputError

HEADER = "imageid,imagefilename,classid,classfilename,gtbboxid,difficult,lx,ty,rx,by,classname\n"


@pytest.fixture
def csv_layout(tmp_path):
    (tmp_path / "classes" / "images").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "classes" / "images" / "c.jpg")
    Image.new("RGB", (80, 60), (10, 200, 10)).save(tmp_path / "src" / "s.jpg")
    return tmp_path


def test_latin1_csv_names_the_file_and_line(csv_layout):
    path = csv_layout / "classes" / "ds.csv"
    path.write_bytes((HEADER + "0,s.jpg,0,c.jpg,0,0,0.1,0.1,0.5,0.5,caf\u00e9\n").encode("latin-1"))
    with pytest.raises(InvalidInputError, match=r"ds.csv:2: not UTF-8 text \(byte b'\\xe9'"):
        read_os2d_csv(path)


def test_csv_parser_error_names_the_line(csv_layout):
    path = csv_layout / "classes" / "ds.csv"
    path.write_text(HEADER + "0,s.jpg,0,c.jpg,0,0,0.1,0.1,0.5,0.5,x\n" + '0,s.jpg,0,c.jpg,1,0,0.1,0.1,0.5,0.5,"'
                    + "x" * 200_000 + '"\n')
    with pytest.raises(InvalidInputError, match=r"ds.csv:3: not a valid CSV line \(field larger than field limit"):
        read_os2d_csv(path)


def test_csv_that_is_a_fifo_or_a_folder(csv_layout):
    fifo = csv_layout / "classes" / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_os2d_csv(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_os2d_csv(csv_layout / "classes")


def test_csv_bad_number_names_file_line_and_column(csv_layout):
    path = csv_layout / "classes" / "ds.csv"
    path.write_text(HEADER + "0,s.jpg,0,c.jpg,0,0,left,0.1,0.5,0.5,x\n")
    with pytest.raises(InvalidInputError, match=r"ds.csv:2: column 'lx' is not a number: 'left'"):
        read_os2d_csv(path)


def _coco(tmp_path, **image_fields):
    Image.new("RGB", (80, 60)).save(tmp_path / "s.jpg")
    Image.new("RGB", (80, 60)).save(tmp_path / "t.jpg")
    data = {
        "images": [{"id": 1, "file_name": "s.jpg", **image_fields}, {"id": 2, "file_name": "t.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20]},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 30, 30]}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("value", ["wide", -3, 12.5, True])
def test_coco_bad_width_names_the_file_and_the_field(tmp_path, value):
    path = _coco(tmp_path, width=value, height=60)
    with pytest.raises(InvalidInputError, match=r"ann.json: images\[0\] \('s.jpg'\): 'width' must be a whole "
                                                r"number of pixels, got"):
        read_coco(path, cache_dir=tmp_path / "cache")


def test_coco_zero_size_means_read_the_header(tmp_path):
    dataset = read_coco(_coco(tmp_path, width=0, height=0), cache_dir=tmp_path / "cache")
    assert dataset.images[0].size == (80, 60) or dataset.excluded_images


def test_coco_unhashable_ids_are_clear_errors(tmp_path):
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = [1]
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=r"annotations\[0\] refers to unknown category id \[1\]"):
        read_coco(path, cache_dir=tmp_path / "cache")
    data["annotations"][0]["category_id"] = 1
    data["images"][0]["id"] = {"a": 1}
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=r"images\[0\] needs an 'id' \(integer or string\)"):
        read_coco(path, cache_dir=tmp_path / "cache")


def test_coco_not_utf8(tmp_path):
    path = tmp_path / "ann.json"
    path.write_bytes(b'{"images": "\xe9"}')
    with pytest.raises(InvalidInputError, match="not UTF-8 text.*ann.json"):
        read_coco(path)


def test_huge_scene_header_is_too_large(csv_layout):
    (csv_layout / "src" / "s.jpg").unlink()
    (csv_layout / "src" / "s.ppm").write_bytes(b"P6\n30000 30000\n255\n" + bytes(64))
    path = csv_layout / "classes" / "ds.csv"
    path.write_text(HEADER + "0,s.ppm,0,c.jpg,0,0,0.1,0.1,0.5,0.5,x\n")
    with pytest.raises(InputTooLargeError, match="too large"):
        read_os2d_csv(path)
