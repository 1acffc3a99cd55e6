"""onnxruntime runs of the exported graphs equal the PyTorch model on the real example scene."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import EXAMPLE, ort_sessions
from shared_data import shared_path

from os2d.data.images import load_image
from os2d.data.preprocess import resize, size_by_area, size_by_longer_side, to_tensor
from os2d.export import export_onnx, read_manifest
from os2d.zoo import load_model

#: Scores and features: absolute; box and corner pixels: relative, with a 1e-3 px floor near 0.
SCORE_ATOL = 1e-4
BOX_RTOL = 1e-4
BOX_ATOL_PX = 1e-3


def class_pixels(model, config):
    """The two example class images as the detector preprocesses them: ``Tensor[3, h, w]`` each."""
    bb = model.backbone
    images = [load_image(EXAMPLE / f"class_image_{i}.jpg") for i in range(2)]
    return [to_tensor(resize(im, size_by_area(im.width, im.height, config.class_size)), mean=bb.pixel_mean,
                      std=bb.pixel_std) for im in images]


def scene_pixels(model, longer_side):
    """The example scene resized to ``longer_side``: ``Tensor[1, 3, Hi, Wi]``."""
    image = load_image(EXAMPLE / "input_image.jpg")
    size = size_by_longer_side(image.width, image.height, longer_side)
    return to_tensor(resize(image, size), mean=model.backbone.pixel_mean, std=model.backbone.pixel_std)[None]


def onnx_class_features(graphs, pixels):
    return np.concatenate([graphs["class_features"].run(None, {"pixels": p[None].numpy()})[0] for p in pixels])


@torch.no_grad()
def assert_round_trip(model, graphs, pixels, class_fm, onnx_class_fm):
    """Scene graph + head graph (fed with onnxruntime's own features) vs ``model.head(model.scene_features(x))``."""
    want = model.head(model.scene_features(pixels), class_fm)
    features = graphs["scene_features"].run(None, {"pixels": pixels.numpy()})[0]
    scores, boxes, corners = graphs["head"].run(None, {"scene_features": features, "class_features": onnx_class_fm})
    height, width = pixels.shape[-2:]
    assert scores.shape == (1, 2, -(-height // 16), -(-width // 16))
    np.testing.assert_allclose(scores, want.scores.numpy(), rtol=0, atol=SCORE_ATOL)
    np.testing.assert_allclose(boxes, want.boxes.numpy(), rtol=BOX_RTOL, atol=BOX_ATOL_PX)
    np.testing.assert_allclose(corners, want.corners.numpy(), rtol=BOX_RTOL, atol=BOX_ATOL_PX)
    return float(np.abs(scores - want.scores.numpy()).max())


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def test_default_class_features_match(default_export, default_model):
    model, config = default_model
    graphs = ort_sessions(default_export.out)
    pixels = class_pixels(model, config)
    assert pixels[0].shape[1:] != pixels[1].shape[1:]  # two class image sizes through one graph
    with torch.no_grad():
        want = model.class_features(pixels)
    np.testing.assert_allclose(onnx_class_features(graphs, pixels), want.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("longer_side", [512, 700])
def test_default_scores_and_boxes_match_at_two_sizes(default_export, default_model, longer_side):
    model, config = default_model
    graphs = ort_sessions(default_export.out)
    pixels = class_pixels(model, config)
    with torch.no_grad():
        class_fm = model.class_features(pixels)
    assert_round_trip(model, graphs, scene_pixels(model, longer_side), class_fm, onnx_class_features(graphs, pixels))


def test_default_manifest_describes_the_model(default_export, default_model):
    from os2d.model.identity import model_identity

    model, config = default_model
    manifest = read_manifest(default_export.out)
    assert manifest.model_identity == model_identity(model, config)
    assert manifest.preprocessing.pixel_mean == tuple(model.backbone.pixel_mean)
    assert manifest.geometry.stride == 16 and manifest.geometry.anchor_size == model.head.anchor_size
    assert manifest.geometry.feature_channels == model.backbone.out_channels
    graphs = ort_sessions(default_export.out)
    for name, spec in manifest.graphs.items():
        session = graphs[name]
        assert [i.name for i in session.get_inputs()] == [t.name for t in spec.inputs]
        assert [o.name for o in session.get_outputs()] == [t.name for t in spec.outputs]
        assert [tuple(o.shape) for o in session.get_outputs()] == [t.shape for t in spec.outputs]


@pytest.fixture(scope="module")
def v2_export(tmp_path_factory):
    model, config = load_model(shared_path("fixtures", "reference", "v2", "checkpoint_v2.pth"))
    assert config.variant == "v2" and config.backbone == "resnet50"
    out = tmp_path_factory.mktemp("export_v2") / "v2"
    export_onnx(model, config, out)
    return model, config, out


def test_reference_v2_checkpoint_round_trip(v2_export):
    model, config, out = v2_export
    graphs = ort_sessions(out)
    pixels = class_pixels(model, config)
    with torch.no_grad():
        class_fm = model.class_features(pixels)
    onnx_class_fm = onnx_class_features(graphs, pixels)
    np.testing.assert_allclose(onnx_class_fm, class_fm.numpy(), rtol=0, atol=1e-5)
    assert_round_trip(model, graphs, scene_pixels(model, 600), class_fm, onnx_class_fm)
    assert read_manifest(out).geometry.variant == "v2"
