"""Shelf layout: determinism, exact boxes (flat and tilted), facings, groups, config errors."""
from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from os2d.synth.compose import BackgroundPool, ClassImage, ClassSource
from os2d.synth.config import ShelfConfig, SynthConfig
from os2d.synth.shelf import choose_class, compose_shelf_scene

COLOURS = [(220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 230, 20)]
#: No photometric change, blur, noise or occluder: pasted pixels keep their class colour.
PLAIN = dict(brightness=0.0, contrast=0.0, saturation=0.0, color_gain=0.0, shading=0.0, blur_prob=0.0,
             noise_prob=0.0, occlusion_prob=0.0, aspect_jitter=0.0, rotation_max_deg=0.0, perspective=0.0,
             jpeg_quality=(95, 95), min_box_size=4, background_flip=False)


def _sources(groups=("A", "A", "B", None)):
    out = []
    for k, (colour, group) in enumerate(zip(COLOURS, groups)):
        img = np.empty((60, 30, 3), np.uint8)
        img[...] = colour
        cls = ClassImage(name=f"c{k}", image=img, mask=np.ones((60, 30), bool))
        out.append(ClassSource(name=f"c{k}", class_file=Path(f"c{k}.png"), appearances=[cls], group=group))
    return out


def _pool():
    grey = np.full((300, 400, 3), 128, np.uint8)
    return BackgroundPool([grey], 400)


def _shelf(**kw):
    base = dict(rows=(2, 3), gap=(0.2, 0.3), edge_occlusion=0.0, tag_prob=0.0, tilt=0.0, back_photo_prob=1.0,
                product_rotation_deg=0.0, product_perspective=0.0, scene_blur_prob=0.0)
    return ShelfConfig(**{**base, **kw})


def _colour_box(image, colour, box, tol=40):
    """Tight box of the pixels of ``colour`` inside ``box`` grown by 2 px (neighbours are >= 5 px away)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(0, x1 - 2), max(0, y1 - 2)
    crop = image[y1:y2 + 2, x1:x2 + 2].astype(int)
    hit = (np.abs(crop - np.array(colour)).max(axis=2) <= tol)
    rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
    return (x1 + cols[0], y1 + rows[0], x1 + cols[-1] + 1, y1 + rows[-1] + 1)


def test_same_seed_same_scene_and_different_index_differs():
    cfg = SynthConfig(seed=4, layout="shelf", **PLAIN)
    a = compose_shelf_scene(3, _sources(), _pool(), cfg)
    b = compose_shelf_scene(3, _sources(), _pool(), cfg)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects and a.objects
    c = compose_shelf_scene(4, _sources(), _pool(), cfg)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("tilt", [0.0, 0.05])
def test_boxes_are_the_tight_boxes_of_the_pasted_products(tilt):
    cfg = SynthConfig(seed=1, **PLAIN)
    for index in range(3):
        scene = compose_shelf_scene(index, _sources(), _pool(), replace(cfg, shelf=_shelf(tilt=tilt)))
        assert len(scene.objects) >= 4
        for obj in scene.objects:
            found = _colour_box(scene.image, COLOURS[obj.class_index], obj.box)
            assert np.abs(np.array(found) - np.array(obj.box)).max() <= 1.0, (index, obj)
            assert not obj.difficult and obj.occlusion == 0.0


def test_every_product_pixel_lies_in_a_box_of_its_class():
    # strong tilt: the warp reaches outside the scene; no product may be mirrored in without a box
    cfg = SynthConfig(seed=5, **PLAIN)
    for index in range(3):
        shelf = _shelf(tilt=0.15, unit_width=(1.0, 1.0))
        scene = compose_shelf_scene(index, _sources(), _pool(), replace(cfg, shelf=shelf))
        for k, colour in enumerate(COLOURS):
            hit = np.abs(scene.image.astype(int) - np.array(colour)).max(axis=2) <= 40
            covered = np.zeros_like(hit)
            for obj in scene.objects:
                if obj.class_index == k:
                    x1, y1, x2, y2 = (int(round(v)) for v in obj.box)
                    covered[max(0, y1 - 1):y2 + 1, max(0, x1 - 1):x2 + 1] = True
            assert not (hit & ~covered).any(), (index, k)


def test_products_stand_in_rows_with_repeated_facings():
    cfg = SynthConfig(seed=2, **PLAIN)
    scene = compose_shelf_scene(0, _sources(), _pool(), replace(cfg, shelf=_shelf(rows=(2, 2), facings=(3, 3))))
    bottoms = np.sort([o.box[3] for o in scene.objects])
    assert (np.diff(bottoms) > 2).sum() == 1  # every product stands on one of the two boards (+-1 px)
    # placement order is left to right, row by row: runs of one class are facing groups
    runs = [len(list(group)) for _, group in itertools.groupby(o.class_index for o in scene.objects)]
    assert max(runs) >= 3 and all(r <= 6 for r in runs)  # two 3-facing groups of one class may meet


def test_shelf_edge_hides_the_bottom_of_sunk_products():
    cfg = SynthConfig(seed=3, difficult_occlusion=0.4, **PLAIN)
    scene = compose_shelf_scene(0, _sources(), _pool(), replace(cfg, shelf=_shelf(edge_occlusion=0.3)))
    occl = [o.occlusion for o in scene.objects]
    assert max(occl) > 0.05 and max(occl) <= 0.3 + 0.02  # at most the sunk part is hidden


def test_choose_class_prefers_the_same_group():
    sources = _sources()
    picks = [choose_class(sources, 0, np.random.default_rng(s), 1.0) for s in range(20)]
    assert set(picks) == {1}  # c1 is c0's only group mate
    free = {choose_class(sources, 3, np.random.default_rng(s), 1.0) for s in range(40)}
    assert free == {0, 1, 2, 3}  # no group: any class


def test_shelf_config_validation_and_round_trip():
    cfg = ShelfConfig(rows=[1, 3])
    assert cfg.rows == (1, 3) and ShelfConfig.from_dict(cfg.to_dict()) == cfg
    synth = SynthConfig(layout="shelf", shelf={"rows": [2, 2]})
    assert synth.shelf == ShelfConfig(rows=(2, 2)) and SynthConfig.from_dict(synth.to_dict()) == synth
    with pytest.raises(ValueError, match="layout"):
        SynthConfig(layout="grid")
    with pytest.raises(ValueError, match="rows"):
        ShelfConfig(rows=(3, 1))
    with pytest.raises(ValueError, match="fill"):
        ShelfConfig(fill=(0.5, 1.5))
    with pytest.raises(ValueError, match="gap"):
        ShelfConfig(gap=(-0.9, 0.0))
    with pytest.raises(ValueError, match="tag_prob"):
        ShelfConfig(tag_prob=2.0)
    with pytest.raises(ValueError, match="tilt"):
        ShelfConfig(tilt=0.5)
    with pytest.raises(ValueError, match="unknown settings"):
        ShelfConfig.from_dict({"rowz": [1, 2]})


# ------------------------------------------------------------------------------------- writer and CLI
def _table_inputs(tmp_path):
    """A class table (two products of one brand as RGBA cut-outs, one product pasted from two crops)
    and two backgrounds, all generated here."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, colour in enumerate(COLOURS[:2]):
        rgba = np.zeros((80, 40, 4), np.uint8)
        rgba[5:75, 5:35, :3] = colour
        rgba[5:75, 5:35, 3] = 255
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"cut{k}.png")
    Image.fromarray(np.full((70, 40, 3), 200, np.uint8)).save(tmp_path / "icon.jpg")
    for k in (1, 2):
        Image.fromarray(rng.integers(0, 255, (60, 30, 3), dtype=np.uint8)).save(tmp_path / f"crop{k}.jpg")
    (tmp_path / "bg").mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(60, 200, (240, 320, 3), dtype=np.uint8)).save(tmp_path / "bg" / f"b{k}.jpg")
    table = tmp_path / "table.csv"
    table.write_text("name,class_image,paste_image,group,mask\n"
                     "chips-a,cut0.png,,Brand,\nchips-b,cut1.png,,Brand,\n"
                     "box,icon.jpg,crop1.jpg,,none\nbox,icon.jpg,crop2.jpg,,none\n")
    return table, tmp_path / "bg"


def test_generate_shelf_dataset_from_a_class_table(tmp_path):
    import csv
    import json

    from os2d.synth import generate_dataset

    table, bg = _table_inputs(tmp_path)
    cfg = SynthConfig(num_scenes=3, seed=7, scene_size=320, layout="shelf", min_box_size=8)
    summary = generate_dataset([], [bg], tmp_path / "a", cfg, class_table=table)
    assert summary.num_classes == 3 and summary.num_scenes >= 1
    images = sorted(p.name for p in (tmp_path / "a" / "classes" / "images").iterdir())
    assert images == ["box.jpg", "chips-a.png", "chips-b.png"]  # class images, named after the class
    assert (tmp_path / "a" / "classes" / "images" / "box.jpg").read_bytes() == (tmp_path / "icon.jpg").read_bytes()
    with open(tmp_path / "a" / "classes" / "synth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["classname"], r["classfilename"]) for r in rows} <= {
        ("box", "box.jpg"), ("chips-a", "chips-a.png"), ("chips-b", "chips-b.png")}
    manifest = json.loads((tmp_path / "a" / "synth_config.json").read_text())
    assert manifest["config"]["layout"] == "shelf" and manifest["config"]["shelf"]["rows"] == [1, 4]
    assert {c["name"]: (c["group"], c["paste_images"]) for c in manifest["classes"]} == {
        "box": (None, 2), "chips-a": ("Brand", 1), "chips-b": ("Brand", 1)}
    generate_dataset([], [bg], tmp_path / "b", cfg, class_table=table)
    for name in [f"classes/{summary.csv_path.name}"] + [f"src/{r['imagefilename']}" for r in rows]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_generate_dataset_class_input_errors(tmp_path):
    from os2d.synth import generate_dataset

    table, bg = _table_inputs(tmp_path)
    with pytest.raises(ValueError, match="no class images given"):
        generate_dataset([], [bg], tmp_path / "out", SynthConfig(num_scenes=1))
    (tmp_path / "t2.csv").write_text("name,class_image\nicon,icon.jpg\n")
    with pytest.raises(ValueError, match="given twice"):
        generate_dataset([tmp_path / "icon.jpg"], [bg], tmp_path / "out", SynthConfig(num_scenes=1),
                         class_table=tmp_path / "t2.csv")
    assert not (tmp_path / "out").exists()


def test_cli_shelf_layout_with_class_table(tmp_path):
    import subprocess
    import sys

    table, bg = _table_inputs(tmp_path)
    base = [sys.executable, "-m", "os2d", "synth", "--backgrounds", str(bg), "--num-scenes", "2",
            "--scene-size", "320", "--min-box-size", "8"]
    ok = subprocess.run(base + ["--class-table", str(table), "--layout", "shelf", "--out", str(tmp_path / "ds")],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "3 classes" in ok.stdout and (tmp_path / "ds" / "classes" / "synth.csv").is_file()
    bad = subprocess.run(base + ["--out", str(tmp_path / "none")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("os2d: error: no class images given")
    assert len(bad.stderr.strip().splitlines()) == 1
