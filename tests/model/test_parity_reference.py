"""Parity with the original authors' implementation on the fixtures in ../shared/fixtures/reference."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from shared_data import assert_same_detection_sets, shared_path
from os2d import Detector
from os2d.data.images import load_image
from os2d.data.preprocess import resize, size_by_area, to_tensor
from os2d.inference.candidates import finalize, level_candidates, reduce_per_class
from os2d.inference.settings import DetectSettings
from os2d.ops.boxes import decode_boxes, encode_boxes

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VARIANTS = ("v1", "v2")


def ref(*parts):
    return shared_path("fixtures", "reference", *parts)


@pytest.fixture(scope="module")
def inputs():
    scene = torch.from_numpy(np.load(ref("inputs", "input_image_th.npz"))["input_image_th"])
    classes = torch.load(ref("inputs", "class_images_th.pt"), weights_only=True)
    return scene, classes


@pytest.fixture(scope="module", params=VARIANTS)
def run(request, inputs):
    """Model outputs on the fixture input tensors, computed once per variant."""
    variant = request.param
    det = Detector.load(ref(variant, f"checkpoint_{variant}.pth"), score_threshold=float("-inf"),
                        max_detections=100000)
    scene, classes = inputs
    with torch.no_grad():
        fm = det.model.backbone(scene)
        bank = det.bank_from_tensors(["class0", "class1"], list(classes), [0, 1])
        out = det.model.head(det.model.scene_features(scene), bank.features)
    return {
        "variant": variant, "det": det, "fm": fm, "bank": bank, "out": out,
        "raw": torch.load(ref(variant, "raw_outputs.pt"), weights_only=True),
        "inter": torch.load(ref(variant, "intermediates.pt"), weights_only=True),
        "detections": json.loads(ref(variant, "detections.json").read_text()),
    }


def test_demo_preprocessing_is_bit_exact(inputs):
    scene_t, class_t = inputs
    scene = load_image(ref("demo", "input_image.jpg"))
    resized = resize(scene, size_by_area(*scene.size, 1500), interpolation="bicubic")
    expected = np.asarray(Image.open(ref("inputs", "input_image_resized_uint8.png")).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(resized), expected)
    assert torch.equal(to_tensor(resized, mean=MEAN, std=STD).unsqueeze(0), scene_t)
    for i in range(2):
        img = load_image(ref("demo", f"class_image_{i}.jpg"))
        small = resize(img, size_by_area(*img.size, 240), interpolation="bicubic")
        png = np.asarray(Image.open(ref("inputs", f"class_image_{i}_resized_uint8.png")).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(small), png)
        assert torch.equal(to_tensor(small, mean=MEAN, std=STD), class_t[i])


def test_backbone_features(run):
    inter = run["inter"]
    fm = run["fm"]
    assert list(fm.shape) == inter["input_fm_shape"].tolist()
    torch.testing.assert_close(fm[:, :16], inter["input_fm_channels_0_16"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(fm[:, :, 40:44, 50:54], inter["input_fm_crop_r40_44_c50_54"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(fm.norm(dim=1), inter["input_fm_l2norm_per_location"], rtol=1e-5, atol=1e-3)


def test_inference_backbone_matches_the_model_backbone(run, inputs):
    """The detector's batch-norm-folded, channels-last backbone copy gives the same features."""
    with torch.no_grad():
        fused = run["det"]._shared.backbone(inputs[0])
    torch.testing.assert_close(fused, run["fm"], rtol=1e-4, atol=2e-3)


def test_class_features_and_transform_params(run):
    inter = run["inter"]
    torch.testing.assert_close(run["bank"].features, inter["class_fms_15x15_l2normed"], rtol=0, atol=1e-5)
    torch.testing.assert_close(run["out"].params[0], inter["transform_params"], rtol=0, atol=1e-4)


def test_raw_outputs_match(run):
    raw, out = run["raw"], run["out"]
    k = out.scores.shape[1]
    torch.testing.assert_close(out.scores[0].reshape(k, -1), raw["class_scores"][0], rtol=0, atol=1e-4)
    anchors = raw["default_boxes_xyxy"]
    boxes = out.boxes[0].reshape(k, -1, 4)
    # [K, N, 4]: our boxes are the reference's encoding target
    torch.testing.assert_close(encode_boxes(boxes, anchors).permute(0, 2, 1), raw["loc_scores"][0], rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes, decode_boxes(raw["loc_scores"][0].permute(0, 2, 1), anchors), rtol=1e-5, atol=2e-3)
    corners = out.corners[0].reshape(k, -1, 8).permute(0, 2, 1)
    # [K, 8, N] pixels up to ~1800: compare relatively
    torch.testing.assert_close(corners, raw["transform_corners"][0], rtol=1e-5, atol=1e-3)
    assert list(out.scores.shape[-2:]) == raw["fm_size_hw"].tolist()


def _fixture_candidates(raw, dets, settings):
    """The reference's raw outputs (boxes decoded from loc_scores) as candidates of one level."""
    k, n = raw["class_scores"][0].shape
    height, width = raw["fm_size_hw"].tolist()
    rows, cols = torch.arange(n) // width, torch.arange(n) % width
    centers = torch.stack([cols, rows], -1).float().repeat(k, 1)
    boxes = decode_boxes(raw["loc_scores"][0].permute(0, 2, 1), raw["default_boxes_xyxy"])
    return level_candidates(
        scores=raw["class_scores"][0].reshape(-1), boxes=boxes.reshape(-1, 4),
        corners=raw["transform_corners"][0].permute(0, 2, 1).reshape(-1, 4, 2), centers=centers,
        entries=torch.arange(k).repeat_interleave(n), level=0, level_size=tuple(dets["image_size_resized_wh"]),
        scale=(1.0, 1.0), stride=16, anchor_size=240.0, score_threshold=settings.score_threshold)


@pytest.mark.parametrize("nms_mode", ["global", "reference"])
def test_nms_on_saved_raw_outputs_is_exact(run, nms_mode):
    raw, dets = run["raw"], run["detections"]
    settings = DetectSettings(score_threshold=float("-inf"), nms_iou=dets["nms_iou_threshold"], max_detections=100000,
                              nms_mode=nms_mode)
    cands = reduce_per_class(_fixture_candidates(raw, dets, settings), torch.tensor([0, 1]), settings)
    done = finalize(cands, torch.tensor([0, 1]), settings)
    labels = torch.tensor(dets["labels"])
    assert len(done.cands) == dets["num_detections"]
    for label in (0, 1):  # the reference lists class 0 then class 1, each by decreasing score
        mine, theirs = done.labels == label, labels == label
        c = done.cands.select(mine.nonzero().squeeze(1))
        assert torch.equal(c.boxes, torch.tensor(dets["boxes_xyxy_resized"])[theirs])
        assert torch.equal(c.scores, torch.tensor(dets["scores"])[theirs])
        assert torch.equal(c.anchors, torch.tensor(dets["default_boxes_xyxy_resized"])[theirs])
        assert torch.equal(c.corners.reshape(-1, 8), torch.tensor(dets["transform_corners_resized"])[theirs])


def test_detector_reproduces_final_detections(run):
    """The whole pipeline from the demo images (reference demo preprocessing) gives the reference detections."""
    det, dets = run["det"], run["detections"]
    demo = det.with_settings(scales=[1500], resize_rule="area", interpolation="bicubic")
    bank = demo.prepare_classes({"class0": ref("demo", "class_image_0.jpg"), "class1": ref("demo", "class_image_1.jpg")})
    result = demo.detect(ref("demo", "input_image.jpg"), bank)
    assert_same_detection_sets(result.boxes, result.scores, result.labels,
                               torch.tensor(dets["boxes_xyxy_original"]), torch.tensor(dets["scores"]),
                               torch.tensor(dets["labels"]))
