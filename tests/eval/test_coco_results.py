"""COCO results files: pycocotools loads them and COCOeval gives the known AP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO  # the `test` extra installs it
from pycocotools.cocoeval import COCOeval

from os2d.errors import InputNotFoundError, InvalidInputError, InvalidTypeError
from os2d.eval.coco_results import read_coco_results, records_from_coco, to_coco_results, write_coco_results
from os2d.structures import Detections

CLASSES = ["choco", "berry", "tvorog"]
GT_CAT_IDS = {"choco": 5, "berry": 7, "tvorog": 9}
IMAGES = {"a.jpg": (10, (200, 150)), "b.jpg": (20, (320, 240)), "c.jpg": (30, (120, 160))}
# two boxes per class and image set, so that "half of the true positives" is exact per class
GT_BOXES = [  # (image, class, [x1, y1, x2, y2])
    ("a.jpg", "choco", [10, 10, 60, 70]), ("a.jpg", "berry", [100, 20, 150, 90]),
    ("b.jpg", "choco", [30, 40, 130, 160]), ("b.jpg", "tvorog", [200, 50, 280, 200]),
    ("c.jpg", "berry", [5, 5, 55, 65]), ("c.jpg", "tvorog", [60, 80, 110, 150]),
]
FALSE_POSITIVES = [("a.jpg", "tvorog", [150, 100, 190, 140]), ("c.jpg", "choco", [0, 100, 40, 150])]


def _ground_truth(tmp_path) -> COCO:
    data = {
        "images": [{"id": i, "file_name": name, "width": w, "height": h} for name, (i, (w, h)) in IMAGES.items()],
        "categories": [{"id": GT_CAT_IDS[n], "name": n} for n in CLASSES],
        "annotations": [
            {"id": k + 1, "image_id": IMAGES[img][0], "category_id": GT_CAT_IDS[cls],
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0}
            for k, (img, cls, b) in enumerate(GT_BOXES)
        ],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return COCO(str(path))


def _records(true_positives):
    tps = [{"image": img, "class": cls, "score": 0.9 - 0.05 * k, "bbox": [float(v) for v in b]}
           for k, (img, cls, b) in enumerate(true_positives)]
    fps = [{"image": img, "class": cls, "score": 0.2, "bbox": [float(v) for v in b]} for img, cls, b in FALSE_POSITIVES]
    return tps + fps


def _ap(tmp_path, records) -> np.ndarray:
    gt = _ground_truth(tmp_path)
    out = write_coco_results(records, tmp_path / "dt.json", category_names=CLASSES,
                             image_sizes={n: s for n, (_, s) in IMAGES.items()},
                             image_ids={n: i for n, (i, _) in IMAGES.items()}, category_ids=GT_CAT_IDS)
    evaluator = COCOeval(gt, gt.loadRes(read_coco_results(out)), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def test_perfect_detections_give_ap_one(tmp_path):
    stats = _ap(tmp_path, _records(GT_BOXES))  # false positives score below every true positive
    assert stats[0] == pytest.approx(1.0) and stats[1] == pytest.approx(1.0)


def test_half_the_true_positives_give_recall_half(tmp_path):
    kept = [GT_BOXES[k] for k in (0, 1, 3)]  # one of the two boxes of each class
    stats = _ap(tmp_path, _records(kept))
    # precision 1 up to recall 0.5, then nothing: 51 of COCO's 101 recall points
    assert stats[0] == pytest.approx(51 / 101)
    assert stats[8] == pytest.approx(0.5)  # AR@100


def test_file_is_also_a_coco_dataset(tmp_path):
    records = _records(GT_BOXES)
    path = write_coco_results(records, tmp_path / "dt.json", category_names=CLASSES,
                              image_sizes={n: s for n, (_, s) in IMAGES.items()})
    coco = COCO(str(path))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == CLASSES  # ids 1..K in class order
    assert len(coco.anns) == len(records)
    first = coco.anns[1]
    assert first == {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 50.0, 60.0], "score": 0.9}


def test_records_round_trip(tmp_path):
    records = _records(GT_BOXES)
    path = write_coco_results(records, tmp_path / "dt.json", image_sizes={n: s for n, (_, s) in IMAGES.items()})
    back = records_from_coco(path)
    def keys(recs):
        return [(r["image"], r["class"], r["score"]) for r in recs]

    assert keys(back) == keys(records)
    np.testing.assert_allclose([r["bbox"] for r in back], [r["bbox"] for r in records])
    assert [c["name"] for c in json.loads(path.read_text())["categories"]] == sorted(CLASSES)  # records: sorted


def test_detections_objects_list_every_scene():
    found = Detections(torch.tensor([[1.0, 2.0, 11.0, 22.0]]), torch.tensor([0.7]), torch.tensor([1]),
                       ["x", "y"], (64, 48), "one.png")
    empty = Detections.empty(["x", "y"], (32, 16), "two.png")
    data = to_coco_results([found, empty])
    assert data["images"] == [{"id": 1, "file_name": "one.png", "width": 64, "height": 48},
                              {"id": 2, "file_name": "two.png", "width": 32, "height": 16}]
    assert data["categories"] == [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]
    assert data["annotations"] == [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1.0, 2.0, 10.0, 20.0],
                                    "score": pytest.approx(0.7)}]


def test_scenes_with_the_same_name_are_refused():
    dets = [Detections.empty(["x"], (4, 4), "same.png"), Detections.empty(["x"], (8, 8), "same.png")]
    with pytest.raises(InvalidInputError, match="same.png"):
        to_coco_results(dets)


def test_unknown_class_is_refused():
    with pytest.raises(InvalidInputError, match="tvorog"):
        to_coco_results(_records(GT_BOXES), category_names=["choco", "berry"],
                        image_sizes={n: s for n, (_, s) in IMAGES.items()})


def test_records_need_image_sizes():
    with pytest.raises(InvalidInputError, match="no image size"):
        to_coco_results(_records(GT_BOXES))


def test_duplicate_given_ids_are_refused():
    with pytest.raises(InvalidInputError, match="not unique"):
        to_coco_results(_records(GT_BOXES), image_sizes={n: s for n, (_, s) in IMAGES.items()},
                        image_ids={"a.jpg": 1, "b.jpg": 1, "c.jpg": 2})


def test_mixed_inputs_are_refused():
    with pytest.raises(InvalidTypeError, match="mix"):
        to_coco_results([Detections.empty(["x"], (4, 4), "a.png"), _records(GT_BOXES)[0]])


def test_missing_output_folder_writes_nothing(tmp_path):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        write_coco_results(_records(GT_BOXES), tmp_path / "nope" / "dt.json",
                           image_sizes={n: s for n, (_, s) in IMAGES.items()})
    assert list(tmp_path.iterdir()) == []


def test_reading_a_plain_list_is_refused(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(InvalidInputError, match="expected an object"):
        read_coco_results(path)
