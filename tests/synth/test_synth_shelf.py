"""Shelf layout: determinism, exact boxes (flat and tilted), facings, groups, config errors."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from os2d.synth.compose import BackgroundPool, ClassImage
from os2d.synth.config import SynthConfig
from os2d.synth.shelf import ShelfConfig, choose_class, compose_shelf_scene
from os2d.synth.sources import ClassSource

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
    cfg, shelf = SynthConfig(seed=4, **PLAIN), ShelfConfig()
    a = compose_shelf_scene(3, _sources(), _pool(), cfg, shelf)
    b = compose_shelf_scene(3, _sources(), _pool(), cfg, shelf)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects and a.objects
    c = compose_shelf_scene(4, _sources(), _pool(), cfg, shelf)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("tilt", [0.0, 0.05])
def test_boxes_are_the_tight_boxes_of_the_pasted_products(tilt):
    cfg = SynthConfig(seed=1, **PLAIN)
    for index in range(3):
        scene = compose_shelf_scene(index, _sources(), _pool(), cfg, _shelf(tilt=tilt))
        assert len(scene.objects) >= 4
        for obj in scene.objects:
            found = _colour_box(scene.image, COLOURS[obj.class_index], obj.box)
            assert np.abs(np.array(found) - np.array(obj.box)).max() <= 1.0, (index, obj)
            assert not obj.difficult and obj.occlusion == 0.0


def test_every_product_pixel_lies_in_a_box_of_its_class():
    # strong tilt: the warp reaches outside the scene; no product may be mirrored in without a box
    cfg = SynthConfig(seed=5, **PLAIN)
    for index in range(3):
        scene = compose_shelf_scene(index, _sources(), _pool(), cfg, _shelf(tilt=0.15, unit_width=(1.0, 1.0)))
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
    scene = compose_shelf_scene(0, _sources(), _pool(), cfg, _shelf(rows=(2, 2), facings=(3, 3)))
    bottoms = np.sort([o.box[3] for o in scene.objects])
    assert (np.diff(bottoms) > 2).sum() == 1  # every product stands on one of the two boards (+-1 px)
    # placement order is left to right, row by row: runs of one class are facing groups
    runs = [len(list(group)) for _, group in itertools.groupby(o.class_index for o in scene.objects)]
    assert max(runs) >= 3 and all(r <= 6 for r in runs)  # two 3-facing groups of one class may meet


def test_shelf_edge_hides_the_bottom_of_sunk_products():
    cfg = SynthConfig(seed=3, difficult_occlusion=0.4, **PLAIN)
    scene = compose_shelf_scene(0, _sources(), _pool(), cfg, _shelf(edge_occlusion=0.3))
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
