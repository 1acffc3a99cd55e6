"""Tests of os2d.detector: DetectSettings (pyramid sizes, overrides, validation) and Detector plumbing.

The Detector tests use a randomly initialised ResNet-50 model on tiny images (no download).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from os2d.detector import Detector, settings_from_config
from os2d.inference.pyramid import auto_scales, level_sizes
from os2d.inference.settings import DetectSettings
from os2d.model.checkpoint import build_model
from os2d.model.config import ModelConfig




# ---------------------------------------------------------------------------------------- settings
def test_default_pyramid_level_sizes():
    settings = DetectSettings()
    # longer side 1280 * (0.5, 0.625, 0.8, 1, 1.2, 1.4, 1.6); short side int(507 * s / 685 + 0.5)
    expected = [(640, 474), (800, 592), (1024, 758), (1280, 947), (1536, 1137), (1792, 1326), (2048, 1516)]
    assert level_sizes(685, 507, settings) == expected
    assert level_sizes(507, 685, settings) == [(h, w) for w, h in expected]


def test_explicit_scales_and_area_rule():
    assert level_sizes(685, 507, DetectSettings(scales=[1280])) == [(1280, 947)]
    assert level_sizes(685, 507, DetectSettings(scales=[1500], resize_rule="area")) == [(1743, 1290)]
    assert level_sizes(50, 25, DetectSettings(base_size=100, pyramid=(1.0, 2.0))) == [(100, 50), (200, 100)]


def test_from_config_uses_config_defaults_and_overrides():
    config = ModelConfig(base_size=800, pyramid=[0.5, 1.0], class_size=200, nms_iou=0.5, score_threshold=0.2,
                         max_detections=7)
    settings = settings_from_config(config)
    assert (settings.base_size, settings.pyramid, settings.class_size) == (800, (0.5, 1.0), 200)
    assert (settings.nms_iou, settings.score_threshold, settings.max_detections) == (0.5, 0.2, 7)
    assert level_sizes(400, 200, settings) == [(400, 200), (800, 400)]
    over = settings_from_config(config, score_threshold=-1.0, scales=[300], method="sliding-window-ar",
                                augment=("flip",), nms_iou=None)  # None keeps the config value
    assert (over.score_threshold, over.scales, over.method, over.augment) == (-1.0, (300.0,), "sliding-window-ar",
                                                                               ("flip",))
    assert over.nms_iou == 0.5 and over.class_size == 200


def test_from_config_unknown_setting():
    with pytest.raises(TypeError, match="unknown detector settings \\['nms_treshold'\\]"):
        settings_from_config(ModelConfig(), nms_treshold=0.5)


def test_from_config_validates_overrides():
    with pytest.raises(ValueError, match="invalid setting resize_rule='shorter-side'"):
        settings_from_config(ModelConfig(), resize_rule="shorter-side")


@pytest.mark.parametrize("kwargs,match", [
    ({"resize_rule": "shorter-side"}, "resize_rule='shorter-side'"),
    ({"augment": ("flip", "rot45")}, "unknown class-image augmentation \\['rot45'\\]"),
    ({"scales": []}, "scales must hold at least one level"),
    ({"scales": [640, 0]}, "every scale must be a pixel size in \\[32, 4096\\], got 0"),
    ({"scales": [-5.0]}, "got -5.0"),
    ({"scales": [float("inf")]}, "got inf"),
    ({"scales": [float("nan")]}, "got nan"),
    ({"scales": [1e9]}, "got 1000000000.0"),
    ({"class_size": 15}, "class_size=15"),
    ({"class_size": 100000}, "class_size=100000"),
    ({"base_size": 0}, "base_size=0"),
    ({"nms_iou": 0.0}, "nms_iou=0.0"),
    ({"nms_iou": 1.5}, "nms_iou=1.5"),
    ({"max_detections": 0}, "max_detections=0"),
    ({"class_batch": 0}, "class_batch=0"),
    ({"score_threshold": float("nan")}, "score threshold must be a number or -inf"),
    ({"nms_mode": "fancy"}, "nms_mode='fancy'"),
    ({"pyramid_from": "middle"}, "pyramid_from='middle'"),
])
def test_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DetectSettings.create(**kwargs)


def test_unknown_method_is_refused_by_the_detector(detector):
    with pytest.raises(ValueError, match="unknown method 'sift2'"):
        detector.with_settings(method="sift2")
    with pytest.raises(ValueError, match="does not use an OS2D model"):
        detector.with_settings(method="sift")


def test_levels_too_large_are_refused():
    from os2d.errors import InputTooLargeError

    with pytest.raises(InputTooLargeError, match="too large"):
        level_sizes(100, 100, DetectSettings(scales=[4096], resize_rule="area"))  # 4096 x 4096 > 16 MP
    assert level_sizes(100, 100, DetectSettings(scales=[4000])) == [(4000, 4000)]


def test_auto_pyramid_rule_follows_the_scene_size():
    settings = DetectSettings(pyramid_rule="auto")
    # 500 x 375: from 240/375 (an object as large as the photo) up to 2x (the upscaling cap), steps of 1.25
    assert auto_scales(500, 375, anchor=240.0, settings=settings) == pytest.approx(
        [1000 / 1.25 ** i for i in range(5, -1, -1)], rel=1e-3)
    # a big photo: capped at 2048 px per level, never upscaled
    big = auto_scales(4000, 3000, anchor=240.0, settings=settings)
    assert max(big) == 2048 and min(big) == pytest.approx(4000 * 240 / 3000 * 1.25 ** 0, rel=0.3)
    # auto_max_object=0.5: the smallest level makes an object of half the shorter side anchor-sized
    half = DetectSettings(pyramid_rule="auto", auto_max_object=0.5)
    assert auto_scales(500, 375, anchor=240.0, settings=half) == pytest.approx(
        [1000 / 1.25 ** i for i in range(2, -1, -1)], rel=1e-3)
    # a tiny crop: one level where the whole crop is anchor-sized
    assert auto_scales(153, 83, anchor=240.0, settings=settings) == pytest.approx([153 * 240 / 83], rel=1e-3)
    # monotone in the scene size, and the smallest level keeps the whole scene anchor-sized
    for w, h in [(300, 200), (640, 480), (1280, 960), (2000, 1500)]:
        levels = auto_scales(w, h, anchor=240.0, settings=settings)
        assert levels == sorted(levels) and 240 <= levels[0] * min(w, h) / max(w, h) < 240 * 1.25


def test_pyramid_from_base_builds_levels_from_the_base_image():
    settings = DetectSettings(base_size=1000, pyramid=(0.625, 1.0, 1.6), pyramid_from="base")
    # base: longer side 1000 -> 1000 x 740 (int(507 * 1000/685 + 0.5)); levels: int(base * f) (truncation)
    assert level_sizes(685, 507, settings) == [(625, 462), (1000, 740), (1600, 1184)]
    original = DetectSettings(base_size=1000, pyramid=(0.625, 1.0, 1.6))  # int(507 * 625/685 + 0.5) = 463
    assert level_sizes(685, 507, original) == [(625, 463), (1000, 740), (1600, 1184)]


# ---------------------------------------------------------------------------------------- detector
@pytest.fixture(scope="module")
def detector():
    # fresh build: identity-initialised TransformNet, random ResNet-50 backbone
    model = build_model(ModelConfig(backbone="resnet50", backbone_weights=None, variant="v1"))
    return Detector(model, ModelConfig(backbone="resnet50", backbone_weights=None), scales=[64], class_size=48,
                    score_threshold=float("-inf"), max_detections=50)


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def classes():
    return {"a": _image(48, 40, 1), "b": [_image(32, 56, 2), _image(40, 40, 3)]}


@pytest.fixture(scope="module")
def bank(detector, classes):
    return detector.prepare_classes(classes)


def test_detector_unknown_setting(detector):
    with pytest.raises(TypeError, match="unknown detector settings \\['scael'\\]"):
        Detector(detector.model, ModelConfig(), scael=[64])


def test_detect_boxes_in_original_pixels(detector, bank):
    scene = _image(96, 128, 4)  # level (64, 48): pixels are scaled by 2 back to the original image
    result = detector.detect(scene, bank)
    assert result.image_size == (128, 96) and result.class_names == ["a", "b"]
    assert 0 < len(result) <= 50
    assert torch.all(result.scores[:-1] >= result.scores[1:])  # sorted
    assert set(result.labels.tolist()) <= {0, 1}
    assert torch.all(result.boxes[:, 0] >= 0) and torch.all(result.boxes[:, 2] <= 128)
    assert torch.all(result.boxes[:, 1] >= 0) and torch.all(result.boxes[:, 3] <= 96)
    assert torch.all(result.boxes[:, 2] > result.boxes[:, 0]) and torch.all(result.boxes[:, 3] > result.boxes[:, 1])
    assert result.extra["corners"].shape == (len(result), 4, 2)
    # anchors are 240 px at level scale (64 x 48 level of a 128 x 96 scene), i.e. 480 px here,
    # centred at ((col + 0.5) * 16 * 2, (row + 0.5) * 16 * 2)
    anchors = result.extra["anchors"]
    torch.testing.assert_close(anchors[:, 2:] - anchors[:, :2], torch.full((len(result), 2), 480.0))
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    torch.testing.assert_close(torch.remainder(centres - 16.0, 32.0), torch.zeros(len(result), 2))


def test_class_bank_entries_and_augmentation(detector, classes, bank):
    assert bank.names == ["a", "b"] and bank.entry_labels.tolist() == [0, 1, 1] and len(bank) == 2
    assert bank.features.shape == (3, 1024, 15, 15) and bank.raw_features is None
    assert bank.extras["templates"].shape == (3, 1024, 5, 5) and bank.extras["colors"].shape[0] == 3
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(3, 15, 15), rtol=1e-4, atol=1e-4)
    assert detector.prepare_classes(bank) is bank
    augmented = detector.with_settings(augment=("flip", "rot90")).prepare_classes({"a": classes["a"]})
    assert augmented.entry_labels.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="augment"):
        detector.prepare_classes(augmented)  # a bank prepared with other class settings is refused


def test_class_batching_and_max_detections(detector, bank):
    scene = _image(64, 64, 5)
    full = detector.detect(scene, bank)
    one_by_one = detector.with_settings(class_batch=1).detect(scene, bank)
    torch.testing.assert_close(full.scores, one_by_one.scores)
    torch.testing.assert_close(full.boxes, one_by_one.boxes)
    # every 240 px anchor covers the 64 px scene: all boxes clip to the image and NMS keeps one per class
    assert len(full) == 2
    assert len(detector.with_settings(nms_iou=1.0, max_detections=3).detect(scene, bank)) == 3


def test_identity_transform_equals_square_sliding_window(detector, classes, bank):
    """A freshly built model's TransformNet outputs the identity, i.e. the square sliding-window baseline."""
    scene = _image(64, 64, 6)
    os2d = detector.detect(scene, bank)
    square_detector = detector.with_settings(method="sliding-window-square")
    square = square_detector.detect(scene, bank)
    torch.testing.assert_close(os2d.scores, square.scores)
    torch.testing.assert_close(os2d.boxes, square.boxes)
    ar = detector.with_settings(method="sliding-window-ar").detect(scene, classes)
    assert len(ar) > 0 and torch.all(ar.scores <= 1 + 1e-5)


def test_small_levels_are_skipped(detector, bank):
    scene = _image(32, 64, 7)
    both = detector.with_settings(scales=[32, 64]).detect(scene, bank)  # the 32 x 16 level is skipped
    only = detector.with_settings(scales=[64]).detect(scene, bank)
    torch.testing.assert_close(both.scores, only.scores)
    with pytest.raises(ValueError, match="too small"):
        detector.with_settings(scales=[32]).detect(scene, bank)


def test_detector_class_errors(detector, bank):
    scene = _image(64, 64, 8)
    with pytest.raises(ValueError, match="no classes given"):
        detector.detect(scene, {})
    with pytest.raises(ValueError, match="class 'a' has no images"):
        detector.detect(scene, {"a": []})
    with pytest.raises(ValueError, match="'tiny' is too small"):
        detector.detect(scene, {"tiny": _image(10, 40, 9)})
    with pytest.raises(ValueError, match="needs class features prepared for it"):
        detector.with_settings(method="sliding-window-ar").detect(scene, bank)


def test_with_settings_validates(detector):
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        detector.with_settings(method="magic")
    with pytest.raises(TypeError):
        detector.with_settings(no_such_setting=1)
    clone = detector.with_settings(nms_iou=0.5)
    assert clone.model is detector.model and clone.settings.nms_iou == 0.5 and detector.settings.nms_iou == 0.3


def test_default_model_tells_the_demo_flavours_apart():
    """The shipped example: one label per cup, decided by raw similarity and colour (not by the classes'
    calibration offsets): the middle column of cups is choco, the right column berry. The model is unsure
    on this photo (calibrated scores 0.03-0.07), so the threshold is low: every box above it is checked."""
    from os2d.cli.detect import example_files

    scenes, classes = example_files()
    det = Detector.load("default", score_threshold=0.02)
    result = det.detect(scenes[0], det.prepare_classes(classes))
    assert len(result) > 0 and det.settings.one_label and det.settings.scores == "calibrated"
    x1, y1, x2, y2 = result.boxes.T
    names = [result.class_names[int(i)] for i in result.labels]
    # single cups on the three upper shelves (the bottom shelf holds other products)
    cups = [(n, float(a + b) / 2) for n, a, b, top, bottom in zip(names, x1, x2, y1, y2)
            if b - a < 150 and (top + bottom) / 2 < 340]
    middle = [n for n, x in cups if 390 <= x <= 440]
    right = [n for n, x in cups if 540 <= x <= 620]
    assert middle and set(middle) == {"fantasia-choco"}
    assert right and set(right) == {"fantasia-berry"}
    assert torch.all(result.extra["raw_scores"] >= 0.4)  # raw scores stay available


def test_one_label_decisions_do_not_depend_on_the_threshold():
    """A facing's label is decided among every class that could win it, also those below the threshold:
    raising the threshold only removes detections, it never relabels a box (the demo's cups)."""
    from os2d.cli.detect import example_files

    scenes, classes = example_files()
    low = Detector.load("default", score_threshold=0.005)
    high = low.with_settings(score_threshold=0.02)
    assert high.candidate_thresholds(high.prepare_classes(classes)) < float(high.raw_thresholds(
        high.prepare_classes(classes)).min())  # the contests reach below the reported threshold
    a = low.detect(scenes[0], low.prepare_classes(classes))
    b = high.detect(scenes[0], high.prepare_classes(classes))
    kept = a.scores > 0.02
    assert 0 < int(kept.sum()) < len(a) and len(b) == int(kept.sum())
    assert torch.equal(a.labels[kept], b.labels) and torch.allclose(a.boxes[kept], b.boxes)
    assert torch.allclose(a.scores[kept], b.scores)
