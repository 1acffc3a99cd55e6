"""Tests of os2d.ops.correlation.correlate: values, the width-major channel order, batching."""
from __future__ import annotations

import pytest
import torch

from os2d.ops.correlation import correlate


def test_correlate_known_answer_and_width_major_channels():
    # class map h=2 (rows) x w=3 (cols), C=1: value at (h_t, w_t) = 10*h_t + w_t
    class_fm = torch.tensor([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]).view(1, 1, 2, 3)
    # scene map 1x2, C=1: values 1 and -2
    scene_fm = torch.tensor([1.0, -2.0]).view(1, 1, 1, 2)
    corr = correlate(scene_fm, class_fm)
    assert corr.shape == (1, 1, 6, 1, 2)  # [B, K, w*h, H, W]
    # channel s = w_t * h + h_t: (0,0), (1,0), (0,1), (1,1), (0,2), (1,2) as (h_t, w_t)
    class_in_channel_order = torch.tensor([0.0, 10.0, 1.0, 11.0, 2.0, 12.0])
    torch.testing.assert_close(corr[0, 0, :, 0, 0], class_in_channel_order)
    torch.testing.assert_close(corr[0, 0, :, 0, 1], -2.0 * class_in_channel_order)


def test_correlate_two_channels_dot_product():
    class_fm = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    scene_fm = torch.tensor([[3.0, 0.0], [4.0, -1.0]]).view(1, 2, 1, 2)  # locations (3,4) and (0,-1)
    corr = correlate(scene_fm, class_fm)
    torch.testing.assert_close(corr.flatten(), torch.tensor([11.0, -2.0]))


def test_correlate_matches_explicit_loop_and_batched_equals_single():
    g = torch.Generator().manual_seed(0)
    scene = torch.randn(2, 5, 4, 6, generator=g, dtype=torch.float64)
    cls = torch.randn(3, 5, 2, 3, generator=g, dtype=torch.float64)  # h != w: order matters
    corr = correlate(scene, cls)
    assert corr.shape == (2, 3, 6, 4, 6)
    for b in range(2):
        for k in range(3):
            single = correlate(scene[b:b + 1], cls[k:k + 1])[0, 0]
            torch.testing.assert_close(corr[b, k], single)
            for h_t in range(2):
                for w_t in range(3):
                    expected = (scene[b] * cls[k, :, h_t, w_t, None, None]).sum(0)
                    torch.testing.assert_close(corr[b, k, w_t * 2 + h_t], expected)


def test_correlate_gradcheck():
    g = torch.Generator().manual_seed(1)
    scene = torch.randn(1, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    cls = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(correlate, (scene, cls))


def test_correlate_channel_mismatch():
    with pytest.raises(ValueError, match="channel mismatch.*4.*3"):
        correlate(torch.zeros(1, 4, 2, 2), torch.zeros(1, 3, 2, 2))
