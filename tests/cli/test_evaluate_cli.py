"""``os2d evaluate`` end to end on the real flickrlogos27 val-new-cl split (first 4 images)."""
from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from shared_data import shared_path
from os2d.cli.main import _register_commands, app, main

_register_commands()
RUNNER = CliRunner()
MAX_IMAGES = "4"




def data_root():
    shared_path("data", "flickrlogos27")
    return str(shared_path("data"))


def flickr_args(*extra):
    return ["evaluate", "--dataset", "flickrlogos27", "--data-root", data_root(), "--split", "val-new-cl",
            "--max-images", MAX_IMAGES, *extra]


def run_cli(args):
    result = RUNNER.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fail(args, monkeypatch, capsys):
    """Run ``os2d <args>`` through ``main()``: exit code 2 and one ``os2d: error:`` line."""
    monkeypatch.setattr(sys, "argv", ["os2d", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert exc.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("os2d: error:"), err
    return lines[0]


@pytest.fixture(scope="module")
def os2d_run(tmp_path_factory):
    """One os2d run (single 384 px level) with --json and --save-detections."""
    tmp = tmp_path_factory.mktemp("eval")
    out, dets = tmp / "result.json", tmp / "dets.json"
    result = run_cli(flickr_args("--scales", "384", "--json", str(out), "--save-detections", str(dets)))
    return result, json.loads(out.read_text()), dets


FIRST_FOUR = {"108232417.jpg", "109950015.jpg", "1111800334.jpg", "117933049.jpg"}
VAL_CLASSES = {"Fedex", "Google", "Mini", "Puma", "Texaco", "Vodafone"}


def test_os2d_result_json_and_table(os2d_run):
    result, blob, dets = os2d_run
    assert "mAP" in result.stdout and "Texaco" in result.stdout
    assert 0.0 <= blob["map"] <= 1.0
    assert set(blob["ap_per_class"]) == VAL_CLASSES
    # only Mini and Texaco have boxes in the first four images: the others have AP None
    assert {c for c, ap in blob["ap_per_class"].items() if ap is not None} == {"Mini", "Texaco"}
    assert blob["n_pos"]["Mini"] == 3 and blob["n_pos"]["Texaco"] == 1
    assert blob["method"] == "exact" and blob["model"] == "default"
    assert blob["scales"] == [384.0] and blob["settings"]["score_threshold"] == "-inf"
    assert blob["settings"]["max_detections"] == 300
    assert blob["split"] == "val-new-cl" and blob["dataset"] == "flickrlogos27"
    assert blob["dataset_name"] == "flickrlogos27:val-new-cl" and blob["num_images"] == 4
    assert blob["seconds_per_image"] > 0 and blob["seconds_class_features"] >= 0
    assert isinstance(blob["os2d_version"], str)


def test_saved_detections_are_detect_json_records(os2d_run):
    _, blob, dets = os2d_run
    records = json.loads(dets.read_text())
    assert len(records) == blob["num_detections"] > 0
    assert {r["image"] for r in records} == FIRST_FOUR
    assert {r["class"] for r in records} <= VAL_CLASSES
    assert all(set(r) == {"image", "class", "score", "bbox"} and len(r["bbox"]) == 4 for r in records)
    per_image = {}
    for r in records:
        per_image[r["image"]] = per_image.get(r["image"], 0) + 1
    assert max(per_image.values()) <= 300
    # threshold -inf keeps every class (one label per object may take all of a class's boxes in one image)
    assert {r["class"] for r in records} == VAL_CLASSES
    assert all(len({r["class"] for r in records if r["image"] == im}) >= 2 for im in FIRST_FOUR)


def test_detections_round_trip_gives_identical_map(os2d_run, tmp_path):
    _, blob, dets = os2d_run
    out = tmp_path / "again.json"
    run_cli(flickr_args("--detections", str(dets), "--json", str(out)))
    again = json.loads(out.read_text())
    assert again["map"] == blob["map"] and again["ap_per_class"] == blob["ap_per_class"]
    assert again["recall_per_class"] == blob["recall_per_class"]
    assert again["detections_file"] == str(dets) and again["method"] is None


def test_ground_truth_as_detections_gives_map_one(tmp_path):
    from os2d.data.datasets import resolve_dataset

    ds = resolve_dataset("flickrlogos27", data_root=data_root(), split="val-new-cl")
    records = [{"image": r.file_name, "class": lab, "score": 1.0, "bbox": box.tolist()}
               for r in ds.images for lab, box in zip(r.labels, r.boxes)]
    path, out = tmp_path / "gt.json", tmp_path / "res.json"
    path.write_text(json.dumps(records))
    # --max-images drops the records of the images left out
    run_cli(flickr_args("--detections", str(path), "--json", str(out)))
    assert json.loads(out.read_text())["map"] == 1.0
    run_cli(flickr_args("--detections", str(path), "--json", str(out), "--max-images", "174", "--overwrite"))
    blob = json.loads(out.read_text())
    assert blob["map"] == 1.0 and blob["num_images"] == 174 and all(blob["ap_per_class"].values())


def test_sift_method(tmp_path):
    out, dets = tmp_path / "sift.json", tmp_path / "sift_dets.json"
    result = run_cli(flickr_args("--method", "sift", "--json", str(out), "--save-detections", str(dets)))
    blob = json.loads(out.read_text())
    assert "mAP" in result.stdout
    assert blob["method"] == "sift" and blob["model"] is None and blob["scales"] is None
    assert 0.0 <= blob["map"] <= 1.0 and set(blob["ap_per_class"]) == VAL_CLASSES
    assert blob["settings"]["min_inliers"] >= 4
    records = json.loads(dets.read_text())
    assert len(records) == blob["num_detections"]
    assert {r["image"] for r in records} <= FIRST_FOUR


def test_errors(tmp_path, monkeypatch, capsys):
    assert "unknown --method 'bogus'" in fail(flickr_args("--method", "bogus"), monkeypatch, capsys)
    assert "unknown --mode 'quick'" in fail(flickr_args("--mode", "quick"), monkeypatch, capsys)
    assert "--iou" in fail(flickr_args("--iou", "1.5"), monkeypatch, capsys)
    msg = fail(["evaluate", "--dataset", str(tmp_path / "nowhere")], monkeypatch, capsys)
    assert "not found" in msg and "nowhere" in msg
    msg = fail(["evaluate", "--dataset", "flickrlogos27", "--data-root", data_root(), "--split", "val-old"],
               monkeypatch, capsys)
    assert "unknown split 'val-old'" in msg and "val-new-cl" in msg
    existing = tmp_path / "exists.json"
    existing.write_text("keep me")
    msg = fail(flickr_args("--method", "sift", "--json", str(existing)), monkeypatch, capsys)
    assert "exists" in msg and "--overwrite" in msg
    msg = fail(flickr_args("--method", "sift", "--save-detections", str(existing)), monkeypatch, capsys)
    assert "exists" in msg
    assert existing.read_text() == "keep me"
    assert "do not apply to method 'sift'" in fail(flickr_args("--method", "sift", "--scales", "300"), monkeypatch, capsys)
    assert "--max-images" in fail(flickr_args("--max-images", "0"), monkeypatch, capsys)
    msg = fail(flickr_args("--detections", str(tmp_path / "missing.json")), monkeypatch, capsys)
    assert "detections file not found" in msg
    msg = fail(flickr_args("--detections", str(existing), "--save-detections", str(tmp_path / "x.json")),
               monkeypatch, capsys)
    assert "exclude each other" in msg
    assert "not valid JSON" in fail(flickr_args("--detections", str(existing)), monkeypatch, capsys)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image": "108232417.jpg", "class": "Pepsi", "score": 1.0, "bbox": [0, 0, 1, 1]}]))
    ignored = tmp_path / "ignored.json"  # a class without ground truth is ignored (reference convention)
    run_cli(flickr_args("--detections", str(bad), "--json", str(ignored)))
    assert json.loads(ignored.read_text())["ignored_classes"] == ["Pepsi"]
    assert "--base-size" in fail(flickr_args("--base-size", "big"), monkeypatch, capsys)


def test_overwrite_replaces_output(tmp_path):
    out = tmp_path / "res.json"
    out.write_text("old")
    run_cli(flickr_args("--method", "sift", "--json", str(out), "--overwrite"))
    assert json.loads(out.read_text())["method"] == "sift"


def test_base_size_auto_uses_ground_truth_object_size(monkeypatch, capsys):
    from os2d.cli.evaluate import _parse_base_size
    from os2d.data.datasets import resolve_dataset

    ds = resolve_dataset("flickrlogos27", data_root=data_root(), split="val-new-cl")
    first = ds.subset(file_names=[ds.images[0].file_name])
    # the only box (305 x 135 px in a 500 px photo) is sqrt(305 * 135) / 500 = 0.406 of the photo:
    # 240 / 0.406 = 591 -> 590 px
    assert _parse_base_size("auto", first) == 590
    assert _parse_base_size("AUTO", ds) == 850
    assert _parse_base_size("1000", ds) == 1000 and _parse_base_size(None, ds) is None
    msg = fail(["evaluate", "--dataset", "grocery-store", "--data-root", data_root(), "--base-size", "auto"],
               monkeypatch, capsys)
    assert "--base-size auto" in msg and "--scales" in msg


def test_outputs_never_replace_the_dataset_files(tmp_path, monkeypatch, capsys):
    """Even with --overwrite, an output that is the dataset's annotation file or one of its images is refused."""
    import shutil

    root = tmp_path / "ds"
    (root / "classes" / "images").mkdir(parents=True)
    (root / "src").mkdir()
    data = shared_path("data", "flickrlogos27")
    shutil.copy(data / "classes" / "images" / "Google.jpg", root / "classes" / "images" / "Google.jpg")
    shutil.copy(data / "src" / "3904333688.jpg", root / "src" / "scene.jpg")
    csv = root / "classes" / "ds.csv"
    csv.write_text("gtbboxid,classid,imageid,imagefilename,classfilename,difficult,lx,ty,rx,by,split,classname\n"
                   "0,0,0,scene.jpg,Google.jpg,0,0.1,0.1,0.6,0.5,val,Google\n")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for flag, target in (("--coco", csv), ("--json", csv), ("--save-detections", root / "src" / "scene.jpg")):
        msg = fail(["evaluate", "--dataset", str(csv), "--method", "sift", flag, str(target), "--overwrite"],
                   monkeypatch, capsys)
        assert "would replace an input" in msg
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
