"""Dataset interface: splits and subsets."""
from __future__ import annotations

import numpy as np
import pytest

from test_datasets_support import TOY_ROWS, make_os2d_dataset
from os2d.data.datasets.base import check_boxes_in_image
from os2d.data.datasets.os2d_csv import read_os2d_csv


@pytest.fixture
def toy(tmp_path):
    return read_os2d_csv(make_os2d_dataset(tmp_path, TOY_ROWS))


def test_filter_split_keeps_boxes_and_images_of_split(toy):
    val = toy.filter_split("val")
    assert val.name == "toy:val" and val.class_names == ["cat", "dog"]
    assert [r.file_name for r in val.images] == ["a.jpg", "b.jpg"]
    assert [len(r) for r in val.images] == [1, 1] and val.images[0].labels == ["dog"]
    train = toy.filter_split("train")
    assert [r.file_name for r in train.images] == ["a.jpg"] and train.class_names == ["cat"]


def test_filter_split_with_wider_image_set(toy):
    train = toy.filter_split("train", image_splits=["train", "val"])
    assert [len(r) for r in train.images] == [1, 0]  # b.jpg kept without boxes


def test_val_all_alias(toy):
    assert toy.filter_split("val-all").num_boxes == 2


def test_error_unknown_split(toy):
    with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train', 'val'\]"):
        toy.filter_split("test")


def test_error_no_split_column(tmp_path):
    header = "gtbboxid,classid,imageid,imagefilename,classfilename,difficult,lx,ty,rx,by"
    ds = read_os2d_csv(make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,c0.jpg,0,0,0,1,1"], header=header))
    with pytest.raises(ValueError, match="has no splits"):
        ds.filter_split("train")


def test_subset_classes_keeps_images(toy):
    sub = toy.subset(classes=["dog"])
    assert sub.class_names == ["dog"] and [len(r) for r in sub.images] == [1, 0]
    assert len(toy.subset(classes=["dog"], drop_empty_images=True)) == 1


def test_subset_file_names(toy):
    assert [r.file_name for r in toy.subset(file_names=["b.jpg"]).images] == ["b.jpg"]


def test_error_subset_unknown_class(toy):
    with pytest.raises(ValueError, match=r"unknown classes \['cow'\]"):
        toy.subset(classes=["cow"])


def test_error_subset_unknown_image(toy):
    with pytest.raises(ValueError, match="'z.jpg'"):
        toy.subset(file_names=["z.jpg"])


def test_error_subset_empty(toy):
    with pytest.raises(ValueError, match="is empty"):
        toy.subset(classes=["dog"], file_names=["b.jpg"], drop_empty_images=True)


def test_record_lookup(toy):
    assert toy.record("b.jpg").image_id == "11"
    with pytest.raises(ValueError, match="'q.jpg' is not in dataset"):
        toy.record("q.jpg")


def test_check_boxes_in_image_clips_small_excess():
    out = check_boxes_in_image(np.array([[-0.5, 0, 10.5, 5]]), (10, 10), where="t")
    assert out.tolist() == [[0, 0, 10, 5]]


def test_error_box_outside_image():
    with pytest.raises(ValueError, match="outside the 10x10 image"):
        check_boxes_in_image(np.array([[0, 0, 15, 5]]), (10, 10), where="t")
