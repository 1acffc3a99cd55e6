"""Tests of os2d.data.preprocess: resize rules, resizing, ToTensor + Normalize, class-size check."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from shared_data import shared_path
from os2d.data.preprocess import (MIN_CLASS_IMAGE_SIDE, check_class_image_size, resize, size_by_area,
                                  size_by_longer_side, to_tensor)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@pytest.mark.parametrize("size,target,expected", [
    ((685, 507), 1500, (1743, 1290)),  # the demo scene
    ((335, 150), 240, (358, 160)),  # demo class image 0
    ((352, 143), 240, (376, 152)),  # demo class image 1
    ((100, 100), 240, (240, 240)),
    ((150, 335), 240, (160, 358)),  # portrait: w and h swap
])
def test_size_by_area_known_answers(size, target, expected):
    assert size_by_area(*size, target) == expected


def test_size_by_area_truncates_and_never_zero():
    # r = 2 -> w = int(10 / sqrt 2) = int(7.07) = 7, h = int(10 * sqrt 2) = int(14.14) = 14
    assert size_by_area(50, 100, 10) == (7, 14)
    assert size_by_area(10000, 1, 1) == (100, 1)  # h = int(0.01) = 0 -> 1


@pytest.mark.parametrize("size,longer,expected", [
    ((685, 507), 1280, (1280, 947)),  # 507 * 1280 / 685 = 947.4
    ((507, 685), 1280, (947, 1280)),
    ((100, 50), 75, (75, 38)),  # 37.5 rounds half up
    ((640, 480), 640, (640, 480)),
    ((1000, 1), 100, (100, 1)),  # 0.1 + 0.5 -> 0 -> at least 1
])
def test_size_by_longer_side_known_answers(size, longer, expected):
    assert size_by_longer_side(*size, longer) == expected


def test_resize_filters_and_same_size():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8))
    assert resize(img, (12, 10)) is img
    for name, flt in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        out = resize(img, (7, 5), interpolation=name)
        assert out.size == (7, 5)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(img.resize((7, 5), resample=flt)))
    assert resize(img, (7, 5)).tobytes() == img.resize((7, 5), resample=Image.BILINEAR).tobytes()


def test_resize_unknown_interpolation():
    with pytest.raises(ValueError, match="unknown interpolation 'lanczos'"):
        resize(Image.new("RGB", (4, 4)), (2, 2), interpolation="lanczos")


def test_to_tensor_known_values():
    arr = np.zeros((2, 3, 3), dtype=np.uint8)  # h = 2, w = 3
    arr[1, 2] = [0, 128, 255]
    out = to_tensor(Image.fromarray(arr), mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert out.shape == (3, 2, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 1, 2], torch.tensor([-1.0, (128 / 255 - 0.5) / 0.25, 0.5]))
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([-1.0, -2.0, -0.5]))


def test_to_tensor_matches_torchvision_to_tensor_normalize():
    from torchvision import transforms

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8))
    expected = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)(transforms.ToTensor()(img))
    assert torch.equal(to_tensor(img, mean=IMAGENET_MEAN, std=IMAGENET_STD), expected)


def test_demo_class_image_preprocessing_matches_reference_fixture():
    """Reference demo: class image -> size_by_area(240) -> bicubic -> ToTensor + Normalize, bit-exact."""
    root = ("fixtures", "reference")
    img = Image.open(shared_path(*root, "demo", "class_image_0.jpg")).convert("RGB")
    resized = resize(img, size_by_area(img.width, img.height, 240), interpolation="bicubic")
    expected_png = Image.open(shared_path(*root, "inputs", "class_image_0_resized_uint8.png")).convert("RGB")
    np.testing.assert_array_equal(np.asarray(resized), np.asarray(expected_png))
    tensors = torch.load(shared_path(*root, "inputs", "class_images_th.pt"), weights_only=True)
    assert torch.equal(to_tensor(resized, mean=IMAGENET_MEAN, std=IMAGENET_STD), tensors[0])


def test_check_class_image_size():
    check_class_image_size(Image.new("RGB", (MIN_CLASS_IMAGE_SIDE, 100)), name="ok")
    with pytest.raises(ValueError, match="'tiny'.*15x100"):
        check_class_image_size(Image.new("RGB", (15, 100)), name="tiny")
    with pytest.raises(ValueError, match="100x3"):
        check_class_image_size(Image.new("RGB", (100, 3)), name="flat")
