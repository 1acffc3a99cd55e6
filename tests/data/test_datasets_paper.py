"""Paper datasets (GroZi, dairy, paste, INSTRE) read from synthetic copies of the published layout."""
from __future__ import annotations

import pytest

from test_datasets_support import make_os2d_dataset
from os2d.data.datasets.paper import paper_dataset, paper_dataset_names, parse_paper_name
from os2d.data.datasets.resolve import resolve_dataset

GROZI_ROWS = [
    "0,0,1,s1.jpg,c0.jpg,0,0,0,0.5,0.5,train,",
    "1,1,2,s2.jpg,c1.jpg,0,0,0,0.5,0.5,val-old-cl,",
    "2,2,3,s3.jpg,c2.jpg,0,0,0,0.5,0.5,val-new-cl,",
    "3,0,4,s4.jpg,c0.jpg,0,0,0,0.5,0.5,train,",
    "4,0,5,s5.jpg,c0.jpg,0,0,0,0.5,0.5,train,",
]


@pytest.fixture
def data_root(tmp_path):
    make_os2d_dataset(tmp_path / "grozi", GROZI_ROWS, csv_name="grozi.csv", scene_dir="src/3264",
                      scenes={f"s{i}.jpg": (8, 6) for i in range(1, 6)}, class_files=["c0.jpg", "c1.jpg", "c2.jpg"])
    paste_rows = ["0,0,1,p.jpg,c0.jpg,1,0,0,1,1,,", "1,0,1,p.jpg,c0.jpg,0,0,0,0.5,0.5,,"]
    make_os2d_dataset(tmp_path / "paste", paste_rows, csv_name="paste.csv", scene_dir="src/original",
                      scenes={"p.jpg": (4, 4)}, class_files=["c0.jpg"])
    make_os2d_dataset(tmp_path / "dairy", ["0,0,1,d.jpg,c0.jpg,0,0,0,1,1,,"], csv_name="dairy.csv",
                      scene_dir="src/original", scenes={"d.jpg": (4, 4)}, class_files=["c0.jpg"])
    return tmp_path


def test_grozi_val_new_cl_is_evaluated_on_all_val_images(data_root):
    ds = paper_dataset("grozi-val-new-cl", data_root=data_root)
    assert ds.name == "grozi-val-new-cl" and ds.class_names == ["c2"]
    assert [r.file_name for r in ds.images] == ["s2.jpg", "s3.jpg"]
    assert [len(r) for r in ds.images] == [0, 1]
    assert ds.images[1].path == data_root / "grozi" / "src" / "3264" / "s3.jpg"


def test_grozi_val_old_cl_and_val_all(data_root):
    old = paper_dataset("grozi-val-old-cl", data_root=data_root)
    assert old.class_names == ["c1"] and [len(r) for r in old.images] == [1, 0]
    both = paper_dataset("grozi-val-all", data_root=data_root)
    assert both.class_names == ["c1", "c2"] and both.num_boxes == 2


def test_grozi_train_and_train_mini(data_root):
    assert len(paper_dataset("grozi-train", data_root=data_root)) == 3
    mini = paper_dataset("grozi-train-mini", data_root=data_root)
    assert [r.file_name for r in mini.images] == ["s1.jpg", "s4.jpg"] and mini.class_names == ["c0"]


def test_paste_f_drops_difficult_flags_paste_v_keeps_them(data_root):
    assert paper_dataset("paste-v", data_root=data_root).images[0].difficult.tolist() == [True, False]
    assert paper_dataset("paste-f", data_root=data_root).images[0].difficult.tolist() == [False, False]


def test_dairy(data_root):
    ds = paper_dataset("dairy", data_root=data_root)
    assert ds.name == "dairy" and ds.images[0].path == data_root / "dairy" / "src" / "original" / "d.jpg"


def test_grozi_folder_path_gets_paper_semantics(data_root):
    ds = resolve_dataset(str(data_root / "grozi"), split="val-new-cl")
    assert [len(r) for r in ds.images] == [0, 1]


def test_instre_class_splits(tmp_path):
    # 20 INSTRE-S1 classes: train = first 15, val = 1, test = last 4; plus 2 INSTRE-S2 classes
    rows, scenes, classes = [], {}, []
    for i in range(22):
        sub = "INSTRE-S1" if i < 20 else "INSTRE-S2"
        cfile, scene = f"{i:05d}_{sub}_obj{i}_000.jpg", f"{sub}/obj{i}/001.jpg"
        rows.append(f"{i},{i},{i},{i},{scene},{cfile},0,0.1,0.1,0.9,0.9")
        scenes[scene], classes = (6, 6), classes + [cfile]
    header = ",gtbboxid,classid,imageid,imagefilename,classfilename,difficult,lx,ty,rx,by"
    make_os2d_dataset(tmp_path / "instre", rows, header=header, csv_name="instre.csv", scene_dir=".",
                      scenes=scenes, class_files=classes)
    train = paper_dataset("instre-s1-train", data_root=tmp_path)
    assert len(train.class_names) == 15 and len(train) == 15
    assert paper_dataset("instre-s1-val", data_root=tmp_path).class_names == [classes[15][:-4]]
    assert len(paper_dataset("instre-s1-test", data_root=tmp_path).class_names) == 4
    assert len(paper_dataset("instre-all", data_root=tmp_path)) == 22
    assert paper_dataset("instre-s2-test", data_root=tmp_path).class_names == [classes[21][:-4]]
    assert train.images[0].path == tmp_path / "instre" / "INSTRE-S1" / "obj0" / "001.jpg"


def test_names():
    assert "grozi-val-new-cl" in paper_dataset_names() and "paste-f" in paper_dataset_names()
    assert parse_paper_name("GroZi-Val-All") == ("grozi", "val-all")
    assert parse_paper_name("grozi") is None and parse_paper_name("dairy") == ("dairy", None)


def test_error_unknown_paper_name(tmp_path):
    with pytest.raises(ValueError, match="unknown paper dataset 'grozi-test'"):
        paper_dataset("grozi-test", data_root=tmp_path)


def test_error_missing_published_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="grozi.csv"):
        paper_dataset("grozi-train", data_root=tmp_path)


def test_error_paper_name_without_data_root():
    with pytest.raises(ValueError, match="pass data_root"):
        resolve_dataset("grozi-val-new-cl", data_root=None)


def test_error_conflicting_split(data_root):
    with pytest.raises(ValueError, match="already selects split 'val-new-cl'"):
        resolve_dataset("grozi-val-new-cl", data_root=data_root, split="train")


def test_error_unknown_grozi_split_on_folder(data_root):
    with pytest.raises(ValueError, match="unknown split 'test' for grozi"):
        resolve_dataset(str(data_root / "grozi"), split="test")
