"""Tests of os2d.ops.features: L2 normalisation and class-feature resampling."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from os2d.ops.features import l2_normalize, resize_class_features


def test_l2_normalize_known_answer_eps_added_to_norm():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64).T  # channels along dim 0
    out = l2_normalize(x, dim=0)
    # column 0 has norm 5: divided by 5 + 1e-5 (eps added to the norm, not inside the sqrt)
    torch.testing.assert_close(out[:, 0], torch.tensor([3.0, 4.0], dtype=torch.float64) / (5.0 + 1e-5),
                               rtol=0, atol=1e-15)
    # an all-zero vector stays zero (no NaN)
    assert torch.equal(out[:, 1], torch.zeros(2, dtype=torch.float64))


def test_l2_normalize_default_dim_is_channels_and_custom_eps():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64)
    out = l2_normalize(x, eps=0.0)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 3, 4, dtype=torch.float64))
    torch.testing.assert_close(l2_normalize(x, eps=1.0), x / (x.norm(dim=1, keepdim=True) + 1.0))


def test_resize_class_features_known_answer_corner_aligned():
    fm = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    out = resize_class_features(fm, size=3)
    # corners keep their values, midpoints are the averages (align_corners=True)
    expected = torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]).view(1, 1, 3, 3)
    torch.testing.assert_close(out, expected)


def test_resize_class_features_equals_identity_grid_sample():
    """The reference resamples with grid_sample (bilinear, zeros padding, align_corners) on an identity grid."""
    g = torch.Generator().manual_seed(1)
    fm = torch.randn(2, 4, 10, 23, generator=g, dtype=torch.float64)
    out = resize_class_features(fm)
    assert out.shape == (2, 4, 15, 15)
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64).expand(2, 2, 3)
    grid = F.affine_grid(theta, (2, 4, 15, 15), align_corners=True)
    expected = F.grid_sample(fm, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_resize_class_features_constant_stays_constant():
    fm = torch.full((1, 3, 4, 9), 2.5)
    torch.testing.assert_close(resize_class_features(fm, size=15), torch.full((1, 3, 15, 15), 2.5))


def test_resize_class_features_gradcheck():
    g = torch.Generator().manual_seed(2)
    fm = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resize_class_features(t, size=5), (fm,))


def test_resize_class_features_rejects_3d_input():
    with pytest.raises(ValueError, match="Tensor\\[K, C, h, w\\]"):
        resize_class_features(torch.zeros(3, 4, 5))
