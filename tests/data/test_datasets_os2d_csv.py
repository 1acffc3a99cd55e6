"""OS2D CSV layout reader: known answers and one test per error."""
from __future__ import annotations

import numpy as np
import pytest

from test_datasets_support import HEADER, TOY_ROWS, make_os2d_dataset
from os2d.data.datasets.os2d_csv import read_os2d_csv


def test_reads_boxes_in_pixels_labels_and_sizes(tmp_path):
    ds = read_os2d_csv(make_os2d_dataset(tmp_path, TOY_ROWS))
    assert ds.name == "toy" and len(ds) == 2 and ds.num_boxes == 3
    assert ds.class_names == ["cat", "dog"]
    assert ds.class_images["cat"] == [tmp_path / "classes" / "images" / "c0.jpg"]
    a = ds.images[0]
    assert (a.image_id, a.file_name, a.size) == ("10", "a.jpg", (40, 20))
    np.testing.assert_allclose(a.boxes, [[10, 10, 20, 20], [0, 0, 4, 2]])
    assert a.labels == ["cat", "dog"] and a.difficult.tolist() == [False, True]
    assert a.splits == ["train", "val"] and a.path == tmp_path / "src" / "a.jpg"


def test_class_name_defaults_to_class_image_stem(tmp_path):
    header = HEADER.rsplit(",", 1)[0]
    rows = [r.rsplit(",", 1)[0] for r in TOY_ROWS]
    ds = read_os2d_csv(make_os2d_dataset(tmp_path, rows, header=header))
    assert ds.class_names == ["c0", "c1"]


def test_scene_found_recursively_and_by_relative_path(tmp_path):
    rows = ["0,0,1,deep.jpg,c0.jpg,0,0,0,1,1,,x", "1,0,2,sub/rel.jpg,c0.jpg,0,0,0,1,1,,x"]
    csv_path = make_os2d_dataset(tmp_path, rows, scenes={"nested/dir/deep.jpg": (10, 10), "sub/rel.jpg": (5, 5)})
    ds = read_os2d_csv(csv_path)
    assert ds.images[0].path == tmp_path / "src" / "nested" / "dir" / "deep.jpg"
    assert ds.images[1].path == tmp_path / "src" / "sub" / "rel.jpg"


def test_reference_defaults_for_missing_file_name_columns_and_index_column(tmp_path):
    header = ",gtbboxid,classid,imageid,difficult,lx,ty,rx,by"
    csv_path = make_os2d_dataset(tmp_path, ["0,0,3,7,0,0,0,1,1"], header=header,
                                 scenes={"7.jpg": (10, 10)}, class_files=["3.jpg"])
    ds = read_os2d_csv(csv_path)
    assert ds.images[0].file_name == "7.jpg" and ds.class_names == ["3"]


def test_small_excess_is_clipped(tmp_path):
    rows = ["0,0,1,a.jpg,c0.jpg,0,-0.005,0,1.005,1,,x"]
    ds = read_os2d_csv(make_os2d_dataset(tmp_path, rows))
    np.testing.assert_allclose(ds.images[0].boxes, [[0, 0, 40, 20]])


def test_classes_ordered_by_numeric_class_id(tmp_path):
    rows = ["0,10,1,a.jpg,c0.jpg,0,0,0,1,1,,ten", "1,2,1,a.jpg,c1.jpg,0,0,0,1,1,,two"]
    assert read_os2d_csv(make_os2d_dataset(tmp_path, rows)).class_names == ["two", "ten"]


def test_error_missing_columns(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,c0.jpg,0,0,0,1"], header=HEADER.replace(",by", "").rsplit(",", 2)[0])
    with pytest.raises(ValueError, match=r"missing columns \['by'\]"):
        read_os2d_csv(csv_path)


def test_error_bad_number(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,c0.jpg,0,zero,0,1,1,,x"])
    with pytest.raises(ValueError, match=r"toy.csv:2: column 'lx' is not a number: 'zero'"):
        read_os2d_csv(csv_path)


def test_error_non_finite_number(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,c0.jpg,0,0,nan,1,1,,x"])
    with pytest.raises(ValueError, match="'ty' is not finite"):
        read_os2d_csv(csv_path)


def test_error_box_outside_image(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,c0.jpg,0,0,0,1.2,1,,x"])
    with pytest.raises(ValueError, match="lies outside the image"):
        read_os2d_csv(csv_path)


def test_error_inverted_box(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,c0.jpg,0,0.5,0,0.4,1,,x"])
    with pytest.raises(ValueError, match="rx < lx"):
        read_os2d_csv(csv_path)


def test_error_bad_difficult_flag(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,c0.jpg,maybe,0,0,1,1,,x"])
    with pytest.raises(ValueError, match="'difficult' must be 0 or 1, got 'maybe'"):
        read_os2d_csv(csv_path)


def test_error_missing_scene_file(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,ghost.jpg,c0.jpg,0,0,0,1,1,,x"])
    with pytest.raises(FileNotFoundError, match="'ghost.jpg' not found"):
        read_os2d_csv(csv_path)


def test_error_missing_class_image(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,a.jpg,nope.jpg,0,0,0,1,1,,x"])
    with pytest.raises(FileNotFoundError, match="class image for class 'x' not found"):
        read_os2d_csv(csv_path)


def test_error_missing_scene_folder(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, TOY_ROWS)
    with pytest.raises(FileNotFoundError, match="scene image folder not found"):
        read_os2d_csv(csv_path, image_root=tmp_path / "elsewhere")


def test_error_ambiguous_scene_name(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,dup.jpg,c0.jpg,0,0,0,1,1,,x"],
                                 scenes={"one/dup.jpg": (4, 4), "two/dup.jpg": (4, 4)})
    with pytest.raises(ValueError, match="'dup.jpg' is ambiguous"):
        read_os2d_csv(csv_path)


def test_error_empty_dataset(tmp_path):
    with pytest.raises(ValueError, match="has no rows"):
        read_os2d_csv(make_os2d_dataset(tmp_path, []))


def test_error_empty_file(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, [])
    csv_path.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        read_os2d_csv(csv_path)


def test_error_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation CSV not found"):
        read_os2d_csv(tmp_path / "none.csv")


def test_error_image_with_two_ids(tmp_path):
    rows = ["0,0,1,a.jpg,c0.jpg,0,0,0,1,1,,x", "1,0,2,a.jpg,c0.jpg,0,0,0,1,1,,x"]
    with pytest.raises(ValueError, match="has two image ids"):
        read_os2d_csv(make_os2d_dataset(tmp_path, rows))


def test_error_corrupt_scene_image(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, ["0,0,1,bad.jpg,c0.jpg,0,0,0,1,1,,x"], scenes={})
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        read_os2d_csv(csv_path)


def test_unicode_bom_header(tmp_path):
    csv_path = make_os2d_dataset(tmp_path, TOY_ROWS)
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert len(read_os2d_csv(csv_path)) == 2
