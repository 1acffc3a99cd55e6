"""Tests of os2d.detector: DetectSettings (pyramid sizes, overrides, validation) and Detector plumbing.

The Detector tests use a randomly initialised ResNet-50 model on tiny images (no download).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from os2d.detector import ClassBank, DetectSettings, Detector
from os2d.model.checkpoint import build_model
from os2d.model.config import ModelConfig




# ---------------------------------------------------------------------------------------- settings
def test_default_pyramid_level_sizes():
    settings = DetectSettings()
    # longer side 1280 * (0.5, 0.625, 0.8, 1, 1.2, 1.4, 1.6); short side int(507 * s / 685 + 0.5)
    expected = [(640, 474), (800, 592), (1024, 758), (1280, 947), (1536, 1137), (1792, 1326), (2048, 1516)]
    assert settings.level_sizes(685, 507) == expected
    assert settings.level_sizes(507, 685) == [(h, w) for w, h in expected]


def test_explicit_scales_and_area_rule():
    assert DetectSettings(scales=[1280]).level_sizes(685, 507) == [(1280, 947)]
    assert DetectSettings(scales=[1500], resize_rule="area").level_sizes(685, 507) == [(1743, 1290)]
    assert DetectSettings(base_size=100, pyramid=(1.0, 2.0)).level_sizes(50, 25) == [(100, 50), (200, 100)]


def test_from_config_uses_config_defaults_and_overrides():
    config = ModelConfig(base_size=800, pyramid=[0.5, 1.0], class_size=200, nms_iou=0.5, score_threshold=0.2,
                         max_detections=7)
    settings = DetectSettings.from_config(config)
    assert (settings.base_size, settings.pyramid, settings.class_size) == (800, (0.5, 1.0), 200)
    assert (settings.nms_iou, settings.score_threshold, settings.max_detections) == (0.5, 0.2, 7)
    assert settings.level_sizes(400, 200) == [(400, 200), (800, 400)]
    over = DetectSettings.from_config(config, score_threshold=-1.0, scales=[300], method="sliding-window-ar",
                                      augment=("flip",), nms_iou=None)  # None keeps the config value
    assert (over.score_threshold, over.scales, over.method, over.augment) == (-1.0, [300], "sliding-window-ar",
                                                                               ("flip",))
    assert over.nms_iou == 0.5 and over.class_size == 200


def test_from_config_unknown_setting():
    with pytest.raises(TypeError, match="unknown detector settings \\['nms_treshold'\\]"):
        DetectSettings.from_config(ModelConfig(), nms_treshold=0.5)


def test_from_config_validates_overrides():
    with pytest.raises(ValueError, match="unknown resize rule"):
        DetectSettings.from_config(ModelConfig(), resize_rule="shorter-side")


@pytest.mark.parametrize("kwargs,match", [
    ({"resize_rule": "shorter-side"}, "unknown resize rule 'shorter-side'"),
    ({"method": "sift"}, "unknown method 'sift'"),
    ({"augment": ("flip", "rot45")}, "unknown class-image augmentation \\['rot45'\\]"),
    ({"scales": []}, "scales must be positive"),
    ({"scales": [640, 0]}, "scales must be positive"),
    ({"scales": [-5.0]}, "scales must be positive"),
    ({"class_size": 15}, "class size must be at least 16 px, got 15"),
    ({"nms_iou": 0.0}, "NMS IoU threshold"),
    ({"nms_iou": 1.5}, "NMS IoU threshold"),
    ({"max_detections": 0}, "max detections must be at least 1"),
])
def test_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DetectSettings(**kwargs)


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
    assert bank.names == ["a", "b"] and bank.entry_labels == [0, 1, 1] and len(bank) == 2
    assert bank.features.shape == (3, 1024, 15, 15) and len(bank.raw_features) == 3
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(3, 15, 15), rtol=1e-4, atol=1e-4)
    assert detector.prepare_classes(bank) is bank
    augmented = detector.with_settings(augment=("flip", "rot90")).prepare_classes({"a": classes["a"]})
    assert augmented.entry_labels == [0, 0, 0]


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
    square = square_detector.detect(scene, ClassBank(bank.names, bank.features, bank.entry_labels,
                                                     bank.raw_features, method="sliding-window-square"))
    torch.testing.assert_close(os2d.scores, square.scores)
    torch.testing.assert_close(os2d.boxes, square.boxes)
    ar = detector.with_settings(method="sliding-window-ar").detect(scene, classes)
    assert len(ar) > 0 and torch.all(ar.scores <= 1 + 1e-5)


def test_small_levels_are_skipped(detector, bank):
    scene = _image(64, 64, 7)
    both = detector.with_settings(scales=[16, 64]).detect(scene, bank)  # 16 px level skipped
    only = detector.detect(scene, bank)
    torch.testing.assert_close(both.scores, only.scores)
    with pytest.raises(ValueError, match="too small"):
        detector.with_settings(scales=[16]).detect(scene, bank)


def test_detector_class_errors(detector, bank):
    scene = _image(64, 64, 8)
    with pytest.raises(ValueError, match="no classes given"):
        detector.detect(scene, {})
    with pytest.raises(ValueError, match="class 'a' has no images"):
        detector.detect(scene, {"a": []})
    with pytest.raises(ValueError, match="'tiny' is too small"):
        detector.detect(scene, {"tiny": _image(10, 40, 9)})
    with pytest.raises(ValueError, match="prepared for method 'os2d'"):
        detector.with_settings(method="sliding-window-ar").detect(scene, bank)


def test_with_settings_validates(detector):
    with pytest.raises(ValueError, match="unknown method"):
        detector.with_settings(method="magic")
    with pytest.raises(TypeError):
        detector.with_settings(no_such_setting=1)
    clone = detector.with_settings(nms_iou=0.5)
    assert clone.model is detector.model and clone.settings.nms_iou == 0.5 and detector.settings.nms_iou == 0.3
