"""Scene composition: masks, exact boxes, constraints, determinism."""
from __future__ import annotations

import numpy as np
import pytest
from synth_helpers import solid_packshot

from os2d.synth import (
    BackgroundPool,
    SynthConfig,
    compose_scene,
    foreground_mask,
    load_class_image,
    scene_rng,
    transform_object,
)

GRAY = (128, 128, 128)


def _gray_pool(size=(300, 220)) -> BackgroundPool:
    w, h = size
    return BackgroundPool([np.full((h, w, 3), GRAY, dtype=np.uint8)], scene_size=max(w, h))


def _foreground_box(image: np.ndarray, background: np.ndarray, thresh: int = 50):
    diff = np.abs(image.astype(int) - background.astype(int)).max(axis=2) > thresh
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    return diff, (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)


def test_foreground_mask_white_packshot():
    img = solid_packshot(obj=(50, 36), size=(90, 70))
    img[30:40, 40:50] = 255  # a white label inside the object stays foreground
    mask = foreground_mask(img, "white")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    # object spans x 20..69, y 17..52; the mask is eroded by at most one pixel
    assert abs(cols[0] - 20) <= 1 and abs(cols[-1] - 69) <= 1
    assert abs(rows[0] - 17) <= 1 and abs(rows[-1] - 52) <= 1
    assert mask[35, 45]
    assert np.array_equal(foreground_mask(img, "auto"), mask)


def test_foreground_mask_falls_back_to_rectangle():
    rng = np.random.default_rng(0)
    logo = rng.integers(0, 255, size=(40, 60, 3), dtype=np.uint8)
    assert foreground_mask(logo, "auto").all()
    assert foreground_mask(solid_packshot(), "none").all()
    with pytest.raises(ValueError, match="mask mode"):
        foreground_mask(logo, "bogus")


def test_load_class_image_crops_to_mask():
    cls = load_class_image(solid_packshot(obj=(50, 36)), name="red", mask="white")
    assert cls.masked and cls.name == "red"
    assert abs(cls.image.shape[1] - 50) <= 2 and abs(cls.image.shape[0] - 36) <= 2
    with pytest.raises(ValueError, match="name"):
        load_class_image(solid_packshot())


def test_transform_object_size():
    cls = load_class_image(solid_packshot(), name="red", mask="white")
    cfg = SynthConfig(rotation_max_deg=0, perspective=0, aspect_jitter=0)
    patch = transform_object(cls, 120.0, np.random.default_rng(0), cfg)
    rows, cols = np.flatnonzero(patch.solid.any(axis=1)), np.flatnonzero(patch.solid.any(axis=0))
    assert abs(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) - 120) <= 2


@pytest.mark.parametrize("mask_mode", ["white", "none"])
def test_boxes_are_exact(mask_mode):
    """One solid object per scene: the box equals the changed region of the raw scene (+-2 px)."""
    image = solid_packshot((220, 30, 30)) if mask_mode == "white" else np.full((40, 70, 3), (220, 30, 30), np.uint8)
    cls = load_class_image(image, name="red", mask=mask_mode)
    pool = _gray_pool()
    bg = pool.get(0)
    cfg = SynthConfig(scene_size=300, min_objects=1, max_objects=1, occlusion_prob=0.0,
                      rotation_max_deg=30, blur_prob=1.0, noise_prob=1.0)
    checked = 0
    for index in range(8):
        scene = compose_scene(index, [cls], pool, cfg)
        if not scene.objects:
            continue
        (box,) = [o.box for o in scene.objects]
        _, found = _foreground_box(scene.image, bg)
        assert np.allclose(box, found, atol=2), (index, box, found)
        checked += 1
    assert checked >= 6


def test_multi_object_constraints():
    classes = [load_class_image(solid_packshot(c), name=n, mask="white")
               for n, c in [("red", (220, 30, 30)), ("blue", (30, 30, 220))]]
    pool = _gray_pool((320, 240))
    n_objects, occluded = 0, 0
    for index in range(8):
        # occluder patches can be any colour: check pixel coverage only in scenes without them
        occlusion_prob = 0.6 if index % 2 else 0.0
        cfg = SynthConfig(scene_size=320, min_objects=3, max_objects=6, occlusion_prob=occlusion_prob)
        scene = compose_scene(index, classes, pool, cfg)
        h, w = scene.image.shape[:2]
        assert scene.image.dtype == np.uint8 and (w, h) == (320, 240)
        assert cfg.jpeg_quality[0] <= scene.jpeg_quality <= cfg.jpeg_quality[1]
        boxes = np.array([o.box for o in scene.objects])
        n_objects += len(boxes)
        occluded += sum(o.occlusion > 0.05 for o in scene.objects)
        for o in scene.objects:
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert min(x2 - x1, y2 - y1) >= cfg.min_box_size
            assert 0 <= o.occlusion <= cfg.max_occlusion + 1e-9
            assert o.difficult == (o.occlusion > cfg.difficult_occlusion)
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
                ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
                inter = iw * ih
                union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
                assert inter / union < cfg.max_iou
                smaller = min(np.prod(a[2:] - a[:2]), np.prod(b[2:] - b[:2]))
                assert inter / smaller <= cfg.max_containment
        if occlusion_prob:
            continue
        # every pasted-object (red or blue) pixel lies in some box
        img = scene.image.astype(int)
        objectish = ((img[..., 0] > 170) & (img[..., 1] < 80)) | ((img[..., 2] > 170) & (img[..., 1] < 80))
        covered = np.zeros_like(objectish)
        for x1, y1, x2, y2 in boxes.astype(int):
            covered[max(0, y1 - 1):y2 + 1, max(0, x1 - 1):x2 + 1] = True
        assert not (objectish & ~covered).any()
    assert n_objects >= 16 and occluded >= 2


def test_compose_is_deterministic():
    cls = [load_class_image(solid_packshot(), name="red", mask="white")]
    pool = _gray_pool()
    cfg = SynthConfig(scene_size=300)
    a = compose_scene(3, cls, pool, cfg)
    b = compose_scene(3, cls, _gray_pool(), cfg)
    assert np.array_equal(a.image, b.image)
    assert [o.box for o in a.objects] == [o.box for o in b.objects]
    c = compose_scene(3, cls, pool, SynthConfig(scene_size=300, seed=1))
    assert not np.array_equal(a.image, c.image)
    assert scene_rng(5, 2).random() == scene_rng(5, 2).random()
    assert scene_rng(5, 2).random() != scene_rng(5, 3).random()


def test_config_validation():
    with pytest.raises(ValueError, match="max_objects"):
        SynthConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="mask"):
        SynthConfig(mask="alpha")
    with pytest.raises(ValueError, match="object_size"):
        SynthConfig(object_size=(0.5, 0.1))
    with pytest.raises(ValueError, match="name"):
        SynthConfig(name="../evil")
    with pytest.raises(ValueError, match="seed"):
        SynthConfig(seed=-1)
    cfg = SynthConfig(seed=7, object_size=[0.1, 0.2])
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        SynthConfig.from_dict({"bogus": 1})
