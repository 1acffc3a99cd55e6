"""Grocery-store recognition check: accuracy on hand-made detections, loading, end-to-end run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from shared_data import shared_path
from os2d.eval.grocery import (
    DEFAULT_SCALES, GROZI_SCALES, GroceryData, GroceryPhoto, evaluate_grocery_records, evenly_spaced,
    find_grocery_store, format_accuracy_table, grozi_class_split, load_grocery, run_on_grocery, top1_accuracy,
    top1_predictions,
)
from os2d.structures import Detections

CLASSES = ["Apple", "Milk", "Soy"]




def _dets(image, entries):
    """Detections of one photo from ``[(class, score)]`` (boxes do not matter for top-1)."""
    n = len(entries)
    return Detections(boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n).reshape(n, 4),
                      scores=torch.tensor([s for _, s in entries], dtype=torch.float32),
                      labels=torch.tensor([CLASSES.index(c) for c, _ in entries], dtype=torch.int64),
                      class_names=CLASSES, image_size=(20, 20), image_name=image)


def _toy_data():
    photos = [GroceryPhoto(f"photos/test/{c}/{c}_{i}.jpg", Path(f"/x/{c}_{i}.jpg"), c, "test")
              for c, i in (("Apple", 1), ("Apple", 2), ("Milk", 1), ("Milk", 2), ("Milk", 3))]
    return GroceryData(Path("/x"), "test", {c: [Path(f"/x/{c}.jpg")] for c in CLASSES}, photos)


def test_accuracy_known_answer_on_hand_made_detections():
    data = _toy_data()
    p = [ph.name for ph in data.photos]
    detections = [
        _dets(p[0], [("Apple", 0.9), ("Milk", 0.2)]),             # Apple photo -> Apple: correct
        _dets(p[1], [("Milk", 0.6), ("Apple", 0.5)]),             # Apple photo -> Milk: wrong
        _dets(p[2], [("Soy", 0.3), ("Milk", 0.8)]),               # unsorted list, top is Milk: correct
        _dets(p[3], []),                                          # no detection: wrong
        _dets(p[4], [("Milk", -0.1), ("Apple", -0.4)]),           # negative scores still rank: correct
    ]
    records = [r for d in detections for r in d.to_records()]
    result = evaluate_grocery_records(data, records)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["accuracy_per_class"] == {"Apple": 0.5, "Milk": pytest.approx(2 / 3), "Soy": None}
    assert result["mean_class_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert result["num_correct"] == 3 and result["num_photos"] == 5 and result["num_without_detections"] == 1
    assert result["photos_per_class"] == {"Apple": 2, "Milk": 3, "Soy": 0}
    assert result["predictions"] == {p[0]: "Apple", p[1]: "Milk", p[2]: "Milk", p[3]: None, p[4]: "Milk"}
    table = format_accuracy_table(result)
    assert "Apple" in table and "60.0" in table


def test_top1_helpers_and_errors():
    assert top1_predictions([{"image": "a", "class": "X", "score": 1.0}, {"image": "a", "class": "Y", "score": 1.0}],
                            ["a", "b"]) == {"a": "X", "b": None}  # ties keep the first
    assert top1_accuracy(["A", None], ["A", "B"])["accuracy"] == 0.5
    with pytest.raises(ValueError, match="not a photo"):
        top1_predictions([{"image": "zzz", "class": "X", "score": 1.0}], ["a"])
    with pytest.raises(ValueError, match="predictions for"):
        top1_accuracy(["A"], ["A", "B"])
    with pytest.raises(ValueError, match="not one of the classes"):
        top1_accuracy(["A"], ["Q"], ["A"])
    with pytest.raises(ValueError, match="not grocery-store classes"):
        evaluate_grocery_records(_toy_data(), [{"image": "x", "class": "Pear", "score": 1.0, "bbox": [0, 0, 1, 1]}])


def test_head_is_round_robin_over_classes():
    data = _toy_data()
    assert [ph.label for ph in data.head(3).photos] == ["Apple", "Milk", "Apple"]
    assert len(data.head(100)) == 5
    with pytest.raises(ValueError, match="at least 1"):
        data.head(0)


def test_load_real_grocery_store():
    root = shared_path("data", "grocery-store")
    assert find_grocery_store("grocery-store", root.parent) == root
    assert find_grocery_store("flickrlogos27", root.parent) is None
    data = load_grocery(root)
    assert data.split == "test" and len(data) == 424 and len(data.class_names) == 16
    assert all(len(v) == 1 and v[0].parent.name == "iconic" and v[0].is_file() for v in data.class_images.values())
    assert "Banana" not in data.class_images  # only the packaged products of labels.csv
    assert {ph.label for ph in data.photos} == set(data.class_names)
    assert len(load_grocery(root, split="val")) == 50 and len(load_grocery(root, split="all")) == 934
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_grocery(root, split="dev")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels file"):
        load_grocery(tmp_path)
    (tmp_path / "iconic").mkdir()
    (tmp_path / "labels.csv").write_text("split,cls,coarse,file\ntest,Pear,Fruit,photos/test/Pear/p.jpg\n")
    with pytest.raises(FileNotFoundError, match="packshot of class 'Pear'"):
        load_grocery(tmp_path)
    Image.new("RGB", (32, 32)).save(tmp_path / "iconic" / "Pear.jpg")
    with pytest.raises(FileNotFoundError, match="photo not found"):
        load_grocery(tmp_path)
    (tmp_path / "labels.csv").write_text("split,label,file\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_grocery(tmp_path)


@pytest.fixture(scope="module")
def three_photos():
    return load_grocery(shared_path("data", "grocery-store")).head(3)


def test_end_to_end_library_on_three_photos(three_photos):
    from os2d.eval.methods import build_method

    runner = build_method("sift")  # fast; the CLI test below runs os2d
    bank = runner.prepare_classes(three_photos.class_images)
    records = run_on_grocery(three_photos, runner.detect_fn(bank), progress=False)
    assert {r["image"] for r in records} <= {ph.name for ph in three_photos.photos}
    result = evaluate_grocery_records(three_photos, records)
    assert result["num_photos"] == 3
    assert result["num_without_detections"] == sum(p is None for p in result["predictions"].values())
    assert result["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert sum(v is not None for v in result["accuracy_per_class"].values()) == 3


def test_end_to_end_cli_on_three_photos(tmp_path):
    from os2d.cli.main import _register_commands, app

    _register_commands()
    root = shared_path("data", "grocery-store")
    out, dets = tmp_path / "g.json", tmp_path / "gd.json"
    args = ["evaluate", "--dataset", str(root), "--max-images", "3", "--json", str(out)]
    result = CliRunner().invoke(app, args + ["--scales", "256", "--save-detections", str(dets)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "top-1 accuracy" in result.stdout
    blob = json.loads(out.read_text())
    assert blob["num_photos"] == 3 and blob["split"] == "test" and blob["scales"] == [256.0]
    assert blob["top1_accuracy"] == blob["accuracy"] and 0.0 <= blob["accuracy"] <= 1.0
    assert len(blob["accuracy_per_class"]) == 16 and len(blob["predictions"]) == 3
    # the saved detections give the same accuracy without running the model
    again = CliRunner().invoke(app, args + ["--detections", str(dets), "--overwrite"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["predictions"] == blob["predictions"]
    assert blob["num_without_detections"] == 0  # threshold -inf: every photo has detections


def test_default_scales_put_a_typical_product_at_class_size():
    # a product filling 60-90 % of a 348 px photo is ~240 px (the class-image size) at some level
    for fraction in (0.6, 0.75, 0.9):
        assert min(abs(fraction * s - 240) for s in DEFAULT_SCALES) < 30


# ------------------------------------------------------------------------------------- GroZi-120
def test_grozi_class_split_is_every_second_class_by_numeric_id():
    train, check = grozi_class_split(["10", "2", "0", "1", "3", "7"])
    assert check == ["0", "2", "7"] and train == ["1", "3", "10"]  # sorted 0 1 2 3 7 10
    with pytest.raises(ValueError, match="must be integers"):
        grozi_class_split(["0", "Milk"])


def test_evenly_spaced_keeps_first_and_last():
    assert evenly_spaced(list("abcdefghij"), 3) == ["a", "e", "j"]  # positions 0, round(4.5) = 4, 9
    assert evenly_spaced(list("abc"), 5) == ["a", "b", "c"] and evenly_spaced(list("abc"), None) == ["a", "b", "c"]
    assert evenly_spaced(list("abc"), 1) == ["a"]
    with pytest.raises(ValueError, match="at least 1"):
        evenly_spaced(list("abc"), 0)


def _write_grozi(tmp_path, counts):
    """A tiny GroZi-120-like folder: class c has counts[c] photos c_video<N>.jpg, N = 1..n."""
    (tmp_path / "iconic").mkdir()
    lines = ["split,cls,file"]
    for cls, n in counts.items():
        Image.new("RGB", (30, 50)).save(tmp_path / "iconic" / f"{cls}.jpg")
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for k in range(1, n + 1):
            Image.new("RGB", (20, 40)).save(tmp_path / "photos" / cls / f"{cls}_video{k}.jpg")
            lines.append(f"test,{cls},photos/{cls}/{cls}_video{k}.jpg")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_load_grozi_like_folder_uses_check_classes_and_caps_photos(tmp_path):
    root = _write_grozi(tmp_path, {"0": 12, "1": 3, "5": 2, "11": 7})
    data = load_grocery(root)
    assert data.kind == "grozi120" and data.name == "grozi120:test" and data.default_scales == GROZI_SCALES
    assert data.class_names == ["0", "5"]  # sorted 0 1 5 11: positions 0 and 2
    files = [ph.name for ph in data.photos]
    # class 0: 5 of 12 photos spread over video1..video12 in numeric order; class 5: both
    assert files == [f"photos/0/0_video{k}.jpg" for k in (1, 4, 7, 9, 12)] + \
        ["photos/5/5_video1.jpg", "photos/5/5_video2.jpg"]
    train = load_grocery(root, classes="train", max_per_class=None)
    assert train.class_names == ["1", "11"] and len(train) == 10
    assert len(load_grocery(root, classes="all", max_per_class=2)) == 8
    with pytest.raises(ValueError, match="classes must be one of"):
        load_grocery(root, classes="some")
    with pytest.raises(ValueError, match="at least 1"):
        load_grocery(root, max_per_class=0)


def test_check_classes_need_a_grozi_folder():
    with pytest.raises(ValueError, match="needs a GroZi-120 folder"):
        load_grocery(shared_path("data", "grocery-store"), classes="check")


def test_load_real_grozi120():
    root = shared_path("data", "grozi120")
    assert find_grocery_store("grozi120", root.parent) == root
    data = load_grocery(root)
    train = load_grocery(root, classes="train", max_per_class=None)
    assert len(data.class_names) == 50 and len(train.class_names) == 50
    assert not set(data.class_names) & set(train.class_names)
    assert data.class_names[:5] == ["0", "2", "4", "7", "9"]  # 5 is not a GroZi-120 class here
    assert len(data) == 250 and {ph.label for ph in data.photos} == set(data.class_names)
    assert len(load_grocery(root, max_per_class=None)) == 1468
    assert all(v[0].parent.name == "iconic" for v in data.class_images.values())


def test_grozi_end_to_end_on_real_photos():
    from os2d.eval.methods import build_method

    data = load_grocery(shared_path("data", "grozi120")).head(4)
    assert [ph.label for ph in data.photos] == ["0", "2", "4", "7"]  # one photo of each of 4 classes
    runner = build_method("sift")
    records = run_on_grocery(data, runner.detect_fn(runner.prepare_classes(data.class_images)), progress=False)
    result = evaluate_grocery_records(data, records)
    assert result["task"] == "grozi120 top-1 recognition" and result["dataset"] == "grozi120:test"
    assert result["num_photos"] == 4 and result["num_classes"] == 50
    assert set(result["predictions"].values()) <= set(data.class_names) | {None}


def test_grozi_scales_put_a_typical_crop_at_class_size():
    # the product fills a median 153x83 crop: sqrt(area) = 0.74 x the level's longer side
    for w, h in ((153, 83), (120, 100), (200, 60)):
        assert min(abs(s * (min(w, h) / max(w, h)) ** 0.5 - 240) for s in GROZI_SCALES) < 40
