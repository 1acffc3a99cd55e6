"""Drawings: label layout (no overlaps), legend, files, crops."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from os2d.draw import check_drawing_path, class_color, draw_detections, save_crops, text_color
from os2d.draw.drawing import DrawStyle, label_texts, layout_drawing, load_font
from os2d.draw.layout import layout_legend, place_labels
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.structures import Detections

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "os2d" / "assets" / "example" / "input_image.jpg"


def _overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _crowd(n=60, classes=10, size=(800, 600), seed=0) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform([0, 0], [size[0] - 120, size[1] - 100], size=(n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(40, 120, size=(n, 2))], axis=1)
    return Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(rng.uniform(0.3, 0.95, n)).float(),
                      torch.tensor(rng.integers(0, classes, n)), [f"class {k}" for k in range(classes)], size, "crowd")


def _layout(dets: Detections, **kwargs):
    style = DrawStyle.for_image(dets.image_size)
    return layout_drawing(dets, dets.image_size, style=style, font=load_font(style.font_size), **kwargs)


def test_crowded_scene_labels_never_overlap_and_stay_inside():
    dets = _crowd()
    layout = _layout(dets)
    rects = [p.rect for p in layout.labels if p is not None]
    assert len(rects) == 60  # every box found a free spot
    assert not [pair for pair in combinations(rects, 2) if _overlap(*pair)]
    assert all(0 <= r[0] and 0 <= r[1] and r[2] <= 800 and r[3] <= 600 for r in rects)
    if not layout.legend.in_strip:
        assert not [r for r in rects if _overlap(r, layout.legend.rect)]


def test_crowded_scene_legend_has_one_entry_per_class():
    dets = _crowd()
    layout = _layout(dets)
    counts = np.bincount(dets.labels.numpy(), minlength=10)
    assert [c for c, _ in layout.legend_items] == [k for k in range(10) if counts[k]]
    assert [t for _, t in layout.legend_items] == [f"class {k} ({counts[k]})" for k in range(10) if counts[k]]
    assert len(layout.legend.entries) == len(layout.legend_items)
    assert not [pair for pair in combinations(layout.legend.entries, 2) if _overlap(*pair)]


def test_lone_box_label_sits_above_left():
    (place,) = place_labels(np.array([[100.0, 100.0, 200.0, 180.0]]), np.array([[60.0, 14.0]]), (0, 0, 400, 300))
    assert place.rect == (100.0, 86.0, 160.0, 100.0) and place.leader is None


def test_second_label_moves_when_the_spot_is_taken():
    boxes = np.array([[100.0, 100.0, 200.0, 180.0], [100.0, 100.0, 200.0, 180.0]])
    first, second = place_labels(boxes, np.array([[60.0, 14.0], [60.0, 14.0]]), (0, 0, 400, 300))
    assert first.rect == (100.0, 86.0, 160.0, 100.0)
    assert second.rect == (100.0, 180.0, 160.0, 194.0)  # below-left, the next preference


def test_blocked_surroundings_give_a_leader_line():
    box = np.array([[150.0, 150.0, 200.0, 200.0]])
    ring = np.array([[100.0, 100.0, 250.0, 150.0], [100.0, 200.0, 250.0, 250.0],
                     [100.0, 150.0, 150.0, 200.0], [200.0, 150.0, 250.0, 200.0], [150.0, 150.0, 200.0, 200.0]])
    (place,) = place_labels(box, np.array([[40.0, 12.0]]), (0, 0, 400, 400), obstacles=ring)
    assert place is not None and place.leader is not None
    assert not any(_overlap(place.rect, r) for r in ring)
    xb, yb = place.leader[2], place.leader[3]
    assert 150 <= xb <= 200 and 150 <= yb <= 200  # the line ends on the box


def test_label_that_fits_nowhere_is_left_out():
    (place,) = place_labels(np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([[30.0, 10.0]]), (0, 0, 40, 40),
                            obstacles=np.array([[0.0, 0.0, 40.0, 40.0]]))
    assert place is None


def test_legend_in_a_free_corner_or_a_strip_below():
    sizes = np.array([[80.0, 14.0], [60.0, 14.0]])
    corner = layout_legend(sizes, np.array([[0.0, 0.0, 100.0, 100.0]]), (400, 300), pad=4, gap=2)
    assert not corner.in_strip and corner.canvas_size == (400, 300) and corner.rect[0] > 100  # top-right
    full = layout_legend(sizes, np.array([[0.0, 0.0, 400.0, 300.0]]), (400, 300), pad=4, gap=2)
    assert full.in_strip and full.canvas_size[0] == 400 and full.canvas_size[1] > 300 and full.rect[1] == 300


def test_labels_show_two_decimals_and_the_runner_up():
    dets = Detections(torch.zeros(2, 4), torch.tensor([0.8149, 0.5]), torch.tensor([0, 1]), ["choco", "berry"],
                      extra={"runner_up_label": torch.tensor([1, -1]), "runner_up_score": torch.tensor([0.6172, 0.0])})
    assert label_texts(dets) == ["choco 0.81 (berry 0.62)", "berry 0.50"]
    assert label_texts(dets, runner_up=False) == ["choco 0.81", "berry 0.50"]


def test_max_labels_labels_only_the_best():
    layout = _layout(_crowd(), max_labels=5)
    best = set(torch.argsort(_crowd().scores, descending=True)[:5].tolist())
    assert {i for i, p in enumerate(layout.labels) if p is not None} == best


def test_dense_scene_gets_a_smaller_font():
    style = DrawStyle.for_image((900, 600))
    fitted = style.fitted([200.0] * 5, [80.0] * 5, longer=900)
    assert style.font_size == 20 and fitted.font_size == 10  # halved (1.25 * 80 / 200), floor 10


def test_colors_are_distinct_and_text_readable():
    colors = [class_color(k) for k in range(40)]
    assert len(set(colors)) == 40
    assert text_color((255, 225, 25)) == (0, 0, 0) and text_color((0, 0, 128)) == (255, 255, 255)


def _example_detections() -> Detections:
    boxes = torch.tensor([[20.0, 30.0, 160.0, 230.0], [170.0, 30.0, 310.0, 230.0], [480.0, 300.0, 660.0, 490.0]])
    return Detections(boxes, torch.tensor([0.87, 0.81, 0.51]), torch.tensor([0, 0, 1]), ["choco", "berry"],
                      (685, 507), "input_image.jpg")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_example_drawing_round_trips_to_a_file(tmp_path, suffix):
    out = tmp_path / f"drawn{suffix}"
    drawing = draw_detections(EXAMPLE, _example_detections(), out)
    with Image.open(out) as saved:
        assert saved.format == ("PNG" if suffix == ".png" else "JPEG") and saved.size == drawing.size
        assert saved.size[0] == 685 and saved.size[1] >= 507
        if suffix == ".png":
            assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(drawing))
    original = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    assert np.array_equal(np.asarray(drawing)[400:500, 250:400], original[400:500, 250:400])  # away from boxes
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left


def test_bad_suffix_is_refused_before_any_work(tmp_path):
    with pytest.raises(InvalidInputError, match=r"\.xyz"):
        draw_detections(tmp_path / "missing.jpg", _example_detections(), tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder_is_refused():
    with pytest.raises(InputNotFoundError, match="does not exist"):
        check_drawing_path("/nonexistent-folder-os2d/out.png")


def test_detections_of_another_image_size_are_refused(tmp_path):
    dets = _example_detections()
    dets.image_size = (100, 100)
    with pytest.raises(InvalidInputError, match="size"):
        draw_detections(EXAMPLE, dets, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_crops_have_box_sizes_and_safe_names(tmp_path):
    boxes = torch.tensor([[10.2, 20.7, 50.0, 60.0], [0.0, 0.0, 685.0, 507.0], [600.0, 400.0, 700.0, 600.0]])
    dets = Detections(boxes, torch.tensor([0.5, 0.9, 0.7]), torch.tensor([0, 1, 1]), ["../evil/name", "ok"],
                      (685, 507), "shelf photo.jpg")
    folder = tmp_path / "crops" / "new"
    paths = save_crops(EXAMPLE, dets, folder)
    assert [p.name for p in paths] == ["shelf_photo_003_evil_name_0.50.png", "shelf_photo_001_ok_0.90.png",
                                       "shelf_photo_002_ok_0.70.png"]
    assert all(p.parent == folder and p.is_file() for p in paths)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(p.name for p in paths)
    sizes = [Image.open(p).size for p in paths]
    assert sizes == [(40, 40), (685, 507), (85, 107)]  # floor/ceil to pixels, clipped to the image


def test_existing_crop_is_not_overwritten(tmp_path):
    dets = _example_detections()
    existing = tmp_path / "input_image_002_choco_0.81.png"
    existing.write_bytes(b"mine")
    with pytest.raises(InvalidInputError, match="exists"):
        save_crops(EXAMPLE, dets, tmp_path)
    assert existing.read_bytes() == b"mine" and [p.name for p in tmp_path.iterdir()] == [existing.name]
    assert len(save_crops(EXAMPLE, dets, tmp_path, overwrite=True)) == 3 and existing.read_bytes() != b"mine"
