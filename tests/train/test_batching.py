"""Training batches: patch geometry (known answers), class batches, determinism, hard-patch pool."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from os2d.data.datasets.base import Dataset, SceneRecord
from os2d.train.batching import (BatchSampler, HardPatchPool, Patch, PatchSpec, choose_offset, choose_scale,
                                 crop_boxes, render_patch)
from os2d.train.config import BatchSection

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "cyan": (0, 255, 255),
          "magenta": (255, 0, 255)}


# ------------------------------------------------------------------------------------- geometry
def test_crop_boxes_known_answer():
    boxes = np.array([[10, 10, 50, 50],      # fully inside after the transform
                      [90, 0, 130, 20],      # half outside on the right -> difficult
                      [0, 0, 5, 5],          # outside on the left -> dropped
                      [95, 40, 105, 60]])    # 80 % inside -> kept, flag preserved
    difficult = np.array([False, False, False, True])
    spec = PatchSpec(dataset=0, image=0, scale=2.0, x0=20, y0=0)
    idx, out, diff = crop_boxes(boxes, difficult, spec, 200, keep_coverage=0.7, remove_coverage=0.3, min_box_side=1)
    assert idx.tolist() == [0, 1, 3]
    np.testing.assert_allclose(out, [[0, 20, 80, 100], [160, 0, 200, 40], [170, 80, 190, 120]])
    assert diff.tolist() == [False, True, True]


def test_crop_boxes_coverage_thresholds_and_min_side():
    boxes = np.array([[0, 0, 100, 10], [0, 20, 100, 30], [0, 40, 100, 41]], dtype=float)
    spec = PatchSpec(0, 0, 1.0, 25, 0)  # patch [25, 125]: boxes keep 75 % of their width
    idx, _, diff = crop_boxes(boxes, np.zeros(3, bool), spec, 100, keep_coverage=0.7, remove_coverage=0.3,
                              min_box_side=2)
    assert idx.tolist() == [0, 1] and diff.tolist() == [False, False]  # 1-px-high box dropped
    idx, _, diff = crop_boxes(boxes, np.zeros(3, bool), spec, 100, keep_coverage=0.8, remove_coverage=0.3,
                              min_box_side=1)
    assert idx.tolist() == [0, 1, 2] and diff.all()
    idx, _, _ = crop_boxes(boxes, np.zeros(3, bool), spec, 100, keep_coverage=0.9, remove_coverage=0.8,
                           min_box_side=1)
    assert idx.size == 0


def test_choose_scale_range_and_clamps():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = choose_scale(80.0, rng, anchor_size=240, object_scale=(0.5, 1.6), min_scale=0.01, max_upscale=10)
        assert 0.5 * 240 - 1e-6 <= 80 * s <= 1.6 * 240 + 1e-6
    assert choose_scale(10.0, rng, anchor_size=240, object_scale=(1, 1), min_scale=0.01, max_upscale=4) == 4
    assert choose_scale(2400.0, rng, anchor_size=240, object_scale=(1, 1), min_scale=0.5, max_upscale=4) == 0.5


def test_choose_offset_contains_box_and_stays_in_image():
    rng = np.random.default_rng(1)
    for _ in range(100):
        x0 = choose_offset(300.0, 400.0, 1000.0, 256, rng)
        assert x0 <= 300 and x0 + 256 >= 400 and 0 <= x0 <= 1000 - 256
    for _ in range(20):  # scene smaller than the patch: the scene lies inside the patch
        x0 = choose_offset(10.0, 50.0, 100.0, 256, rng)
        assert 100 - 256 <= x0 <= 0
    for _ in range(20):  # box larger than the patch: the window lies inside the box
        x0 = choose_offset(100.0, 700.0, 1000.0, 256, rng)
        assert 100 <= x0 <= 700 - 256


def test_render_patch_places_pixels_where_boxes_say():
    img = Image.new("RGB", (100, 80), (0, 0, 0))
    img.paste(Image.new("RGB", (20, 10), (255, 0, 0)), (30, 40))   # box [30, 40, 50, 50]
    spec = PatchSpec(0, 0, 2.0, 40, -10)                           # box -> [20, 90, 60, 110]
    patch = np.asarray(render_patch(img, spec, 128, (7, 8, 9))).astype(int)
    assert patch.shape == (128, 128, 3)
    assert (patch[92:108, 22:58] == [255, 0, 0]).all()
    assert (patch[80:88, 22:58, 0] < 40).all() and (patch[112:120, 22:58, 0] < 40).all()
    assert (patch[:10, :, :] == [7, 8, 9]).all()                    # padding above the scene
    assert (patch[40:60, :5, :] == [0, 0, 0]).all()
    right = np.asarray(render_patch(img, PatchSpec(0, 0, 2.0, 120, 0), 128, (7, 8, 9))).astype(int)
    assert (right[:, 80:, :] == [7, 8, 9]).all() and (right[:, :79, :] == [0, 0, 0]).all()  # scene ends at 200-120


# ------------------------------------------------------------------------------------- sampler
def _scene(path: Path, size, objects):
    img = Image.new("RGB", size, (128, 128, 128))
    for name, (x1, y1, x2, y2) in objects:
        img.paste(Image.new("RGB", (x2 - x1, y2 - y1), COLORS[name]), (x1, y1))
    img.save(path)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    class_images = {}
    for name, color in COLORS.items():
        Image.new("RGB", (60, 30), color).save(root / f"{name}.png")
        class_images[name] = [root / f"{name}.png"]
    layout = [
        [("red", (20, 30, 100, 90)), ("green", (150, 40, 230, 110))],
        [("blue", (40, 40, 140, 120))],
        [("red", (10, 10, 60, 60)), ("cyan", (100, 100, 180, 160))],
    ]
    records = []
    for i, objects in enumerate(layout):
        path = root / f"scene{i}.png"
        _scene(path, (260, 180), objects)
        records.append(SceneRecord(str(i), path.name, path, np.array([b for _, b in objects], float),
                                   [n for n, _ in objects], np.zeros(len(objects), bool), size=(260, 180)))
    return Dataset("toy", list(COLORS), class_images, records)


def _sampler(toy, **kw):
    cfg = BatchSection(**{"batch_size": 2, "patch_size": 128, "class_batch": 4, "class_size": 32,
                          "object_scale": [0.4, 0.6], "max_upscale": 4.0, **kw})
    return BatchSampler([toy], [1.0], cfg, anchor_size=240, pixel_mean=MEAN, pixel_std=STD, seed=3)


def test_batch_is_deterministic_given_seed_and_iteration(toy):
    a, b = _sampler(toy).batch(5), _sampler(toy).batch(5)
    assert torch.equal(a.images, b.images) and a.specs == b.specs and a.class_keys == b.class_keys
    assert all(torch.equal(x, y) for x, y in zip(a.gt_boxes, b.gt_boxes))
    others = [_sampler(toy).batch(i).specs for i in range(5)]
    assert any(s != a.specs for s in others)


def test_boxes_mark_the_objects_in_the_patch(toy):
    sampler = _sampler(toy, batch_size=4)
    for it in range(6):
        batch = sampler.batch(it)
        assert batch.images.shape == (4, 3, 128, 128)
        for img, boxes, labels, diff in zip(batch.images, batch.gt_boxes, batch.gt_labels, batch.gt_difficult):
            pixels = (img * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)) * 255
            for box, label, d in zip(boxes.tolist(), labels.tolist(), diff.tolist()):
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                if d or x2 - x1 < 6 or y2 - y1 < 6:
                    continue
                inner = pixels[:, y1 + 2:y2 - 2, x1 + 2:x2 - 2].reshape(3, -1).mean(1)
                name = batch.class_keys[label][1]
                assert torch.allclose(inner, torch.tensor(COLORS[name], dtype=torch.float32), atol=3), (it, name)


def test_class_batch_positives_then_negatives(toy):
    sampler = _sampler(toy, batch_size=2, class_batch=4)
    for it in range(8):
        batch = sampler.batch(it)
        keys = batch.class_keys
        assert len(keys) == 4 and len(set(keys)) == 4
        annotated = {(p.dataset, toy.images[p.image].labels[j]) for p in batch.specs
                     for j in range(len(toy.images[p.image].labels))}
        positives = keys[:batch.num_positive_classes]
        assert set(positives) <= annotated
        present = {keys[int(l)] for labels in batch.gt_labels for l in labels}
        assert present == set(positives) | (present & set(keys[batch.num_positive_classes:]))
        assert len(batch.class_images) == 4 and all(t.shape[0] == 3 for t in batch.class_images)


def test_class_batch_subsamples_positives_when_too_many(toy):
    sampler = _sampler(toy, batch_size=6, class_batch=2)
    batch = sampler.batch(0)
    assert len(batch.class_keys) == 2 and batch.num_positive_classes == 2
    for labels in batch.gt_labels:
        assert all(0 <= int(l) < 2 for l in labels)


def test_class_image_area_rule_and_cache(toy):
    sampler = _sampler(toy)
    id1, t1 = sampler.class_image((0, "red"))
    id2, t2 = sampler.class_image((0, "red"))
    assert id1 == id2 == (0, "red", 0) and t1 is t2
    h, w = t1.shape[1:]
    assert (w, h) == (45, 22)  # 60x30 at class_size 32: int(32*sqrt(2)), int(32/sqrt(2))


def test_hard_patch_pool_keeps_highest_losses_and_round_trips():
    pool = HardPatchPool(2)
    specs = [PatchSpec(0, i, 1.0, 0, 0) for i in range(4)]
    pool.add(specs, [0.1, 0.9, float("nan"), 0.5])
    assert [s.image for _, s in pool.items] == [1, 3]
    clone = HardPatchPool(1)
    clone.load_state_dict(pool.state_dict())
    assert clone.items == pool.items and clone.size == 2
    taken = pool.take(np.random.default_rng(0))
    assert taken.image in (1, 3) and len(pool) == 1


def test_hard_patch_mining_resamples_pool_patches(toy):
    sampler = _sampler(toy, batch_size=2, hard_patch_mining=True, hard_prob=1.0, hard_pool_size=4)
    first = sampler.batch(0)
    sampler.record_losses(first.specs, [1.0, 2.0])
    second = sampler.batch(1)
    assert set(second.specs) == set(first.specs) and len(sampler.pool) == 0


# ------------------------------------------------------------------------------------- hard negatives
SIMILAR = {"red": ["magenta", "cyan", "green"], "green": ["cyan", "blue"], "blue": ["cyan", "magenta"],
           "cyan": ["blue", "green"]}


def _patch(labels, dataset=0):
    return Patch(image=torch.zeros(3, 8, 8), boxes=np.zeros((len(labels), 4)), labels=list(labels),
                 difficult=np.zeros(len(labels), bool), spec=PatchSpec(dataset, 0, 1.0, 0, 0))


def test_hard_negatives_follow_similarity_round_robin(toy):
    sampler = _sampler(toy, class_batch=5)
    sampler.similar = [SIMILAR]
    keys, num_pos = sampler.choose_classes([_patch(["red"]), _patch(["green"])], np.random.default_rng(0))
    names = [k[1] for k in keys]
    assert num_pos == 2 and names[:2] == ["red", "green"]
    # rank 0: red -> magenta, green -> cyan; rank 1: red -> cyan (taken), green -> blue
    assert names[2:5] == ["magenta", "cyan", "blue"]
    keys, _ = sampler.choose_classes([_patch(["red"]), _patch(["green"])], np.random.default_rng(0))
    assert [k[1] for k in keys] == names  # no randomness in the hard part
    sampler.hard_negatives = 1
    keys, _ = sampler.choose_classes([_patch(["red"]), _patch(["green"])], np.random.default_rng(0))
    assert [k[1] for k in keys][2:4] == ["magenta", "cyan"] and len(keys) == 5  # then one random fill


def test_hard_negatives_skip_positives_and_respect_the_limit(toy):
    sampler = _sampler(toy, class_batch=3)
    sampler.similar = [SIMILAR]
    keys, num_pos = sampler.choose_classes([_patch(["blue", "cyan"])], np.random.default_rng(1))
    # rank 0: blue -> cyan and cyan -> blue are positives; rank 1: blue -> magenta fills the one slot
    assert num_pos == 2 and [k[1] for k in keys] == ["blue", "cyan", "magenta"]


def test_without_similar_classes_batches_are_unchanged(toy):
    plain = _sampler(toy)
    assert plain.similar == [{}]  # the toy dataset has no similar_classes.json
    explicit = BatchSampler([toy], [1.0], plain.config, anchor_size=240, pixel_mean=MEAN, pixel_std=STD, seed=3,
                            similar_classes=[{}], hard_negatives=0)
    assert all(plain.batch(i).class_keys == explicit.batch(i).class_keys for i in range(6))
    with pytest.raises(ValueError, match="one similar-classes mapping per dataset"):
        BatchSampler([toy], [1.0], plain.config, anchor_size=240, pixel_mean=MEAN, pixel_std=STD,
                     similar_classes=[{}, {}])
    with pytest.raises(ValueError, match="hard_negatives must be >= 0"):
        BatchSampler([toy], [1.0], plain.config, anchor_size=240, pixel_mean=MEAN, pixel_std=STD, hard_negatives=-1)


def test_sampler_reads_the_datasets_similar_classes_file(toy, tmp_path):
    from os2d.train.similar_classes import write_similar_classes

    images = tmp_path / "classes" / "images"
    images.mkdir(parents=True)
    class_images = {}
    for name in COLORS:
        Image.new("RGB", (60, 30), COLORS[name]).save(images / f"{name}.png")
        class_images[name] = [images / f"{name}.png"]
    write_similar_classes(tmp_path / "classes" / "similar_classes.json",
                          {"red": ["magenta", "nope", "red"], "gone": ["red"]})
    dataset = Dataset("toy2", list(COLORS), class_images, toy.images)
    sampler = BatchSampler([dataset], [1.0], _sampler(toy).config, anchor_size=240, pixel_mean=MEAN, pixel_std=STD)
    assert sampler.similar == [{"red": ["magenta"]}]  # unknown classes and the class itself are dropped
    for it in range(10):
        batch = sampler.batch(it)
        positives = batch.class_keys[:batch.num_positive_classes]
        if (0, "red") in positives and (0, "magenta") not in positives:
            assert (0, "magenta") in batch.class_keys[batch.num_positive_classes:]
