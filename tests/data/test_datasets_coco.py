"""COCO JSON reader: class images given or cropped (source scene excluded), difficult flags, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from test_datasets_support import write_image
from os2d.data.datasets.coco import read_coco


def _coco(tmp_path, *, annotations=None, categories=None, images=None):
    for name, size in {"s1.png": (40, 30), "s2.png": (40, 30), "s3.png": (20, 20)}.items():
        write_image(tmp_path / "imgs" / name, size)
    write_image(tmp_path / "query" / "dog.png", (6, 6))
    data = {
        "images": images if images is not None else [
            {"id": 1, "file_name": "imgs/s1.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "imgs/s2.png", "width": 40, "height": 30},
            {"id": 3, "file_name": "imgs/s3.png"},
        ],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 5]},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [0, 0, 20, 10]},   # largest cat
            {"id": 3, "image_id": 2, "category_id": 8, "bbox": [25, 5, 5, 5]},
            {"id": 4, "image_id": 1, "category_id": 8, "bbox": [0, 0, 4, 4], "iscrowd": 1},
            {"id": 5, "image_id": 3, "category_id": 8, "bbox": [1, 1, 3, 3], "difficult": True},
            {"id": 6, "image_id": 3, "category_id": 7, "bbox": [0, 0, 20, 20], "iscrowd": 1},
        ],
        "categories": categories if categories is not None else [
            {"id": 7, "name": "cat"}, {"id": 8, "name": "dog", "class_image": "query/dog.png"},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_reads_boxes_difficult_and_class_images(tmp_path):
    ds = read_coco(_coco(tmp_path), cache_dir=tmp_path / "cache")
    assert ds.class_names == ["cat", "dog"] and ds.class_images["dog"] == [tmp_path / "query" / "dog.png"]
    assert [r.file_name for r in ds.images] == ["imgs/s1.png", "imgs/s3.png"]
    assert ds.excluded_images == ["imgs/s2.png"]
    s1 = ds.images[0]
    np.testing.assert_allclose(s1.boxes, [[2, 3, 12, 8], [0, 0, 4, 4]])
    assert s1.labels == ["cat", "dog"] and s1.difficult.tolist() == [False, True]
    s3 = ds.images[1]
    assert s3.size == (20, 20) and s3.difficult.tolist() == [True, True]


def test_class_image_cropped_from_largest_instance_into_cache(tmp_path):
    ds = read_coco(_coco(tmp_path), cache_dir=tmp_path / "cache")
    crop = ds.class_images["cat"][0]
    assert crop.is_relative_to(tmp_path / "cache") and crop.suffix == ".png"
    with Image.open(crop) as img:
        assert img.size == (20, 10)
    assert not list((tmp_path / "imgs").glob("*cat*"))


def test_image_root_parameter(tmp_path):
    path = _coco(tmp_path, images=[{"id": 1, "file_name": "s1.png", "width": 40, "height": 30}],
                 annotations=[], categories=[{"id": 8, "name": "dog", "class_image": "query/dog.png"}])
    ds = read_coco(path, image_root=tmp_path / "imgs", cache_dir=tmp_path / "c")
    assert ds.images[0].path == tmp_path / "imgs" / "s1.png" and len(ds.images[0]) == 0


def test_category_without_instances_is_dropped(tmp_path):
    cats = [{"id": 7, "name": "cat"}, {"id": 8, "name": "dog", "class_image": "query/dog.png"},
            {"id": 9, "name": "emu"}]
    ds = read_coco(_coco(tmp_path, categories=cats), cache_dir=tmp_path / "c")
    assert ds.class_names == ["cat", "dog"]


def test_error_unknown_image_id(tmp_path):
    path = _coco(tmp_path, annotations=[{"image_id": 99, "category_id": 7, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="unknown image id 99"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_unknown_category(tmp_path):
    path = _coco(tmp_path, annotations=[{"image_id": 1, "category_id": 42, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="unknown category id 42"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_box_outside_image(tmp_path):
    path = _coco(tmp_path, annotations=[{"image_id": 1, "category_id": 7, "bbox": [30, 0, 20, 5]}])
    with pytest.raises(ValueError, match=r"annotations\[0\]: box .* outside the 40x30 image"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_malformed_bbox(tmp_path):
    path = _coco(tmp_path, annotations=[{"image_id": 1, "category_id": 7, "bbox": [0, 0, 5]}])
    with pytest.raises(ValueError, match="'bbox' must be 4 finite numbers"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_negative_size_bbox(tmp_path):
    path = _coco(tmp_path, annotations=[{"image_id": 1, "category_id": 7, "bbox": [5, 5, -2, 3]}])
    with pytest.raises(ValueError, match="negative width"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_missing_scene_file(tmp_path):
    path = _coco(tmp_path, images=[{"id": 1, "file_name": "imgs/none.png", "width": 4, "height": 4}])
    with pytest.raises(FileNotFoundError, match="'imgs/none.png'"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_missing_class_image(tmp_path):
    path = _coco(tmp_path, categories=[{"id": 7, "name": "cat", "class_image": "query/none.png"},
                                       {"id": 8, "name": "dog"}])
    with pytest.raises(FileNotFoundError, match="class image of category 'cat' not found"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_empty_dataset(tmp_path):
    with pytest.raises(ValueError, match="empty dataset"):
        read_coco(_coco(tmp_path, images=[]), cache_dir=tmp_path / "c")


def test_error_all_scenes_used_for_class_images(tmp_path):
    path = _coco(tmp_path, images=[{"id": 1, "file_name": "imgs/s1.png", "width": 40, "height": 30}],
                 annotations=[{"image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]}],
                 categories=[{"id": 7, "name": "cat"}])
    with pytest.raises(ValueError, match="no scene images left"):
        read_coco(path, cache_dir=tmp_path / "c")


def test_error_missing_section(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="needs a list 'categories'"):
        read_coco(path)


def test_error_invalid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_coco(path)


def test_error_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        read_coco(tmp_path / "none.json")


def test_error_duplicate_category_names(tmp_path):
    path = _coco(tmp_path, categories=[{"id": 7, "name": "cat"}, {"id": 8, "name": "cat"}])
    with pytest.raises(ValueError, match=r"duplicate category names \['cat'\]"):
        read_coco(path, cache_dir=tmp_path / "c")
