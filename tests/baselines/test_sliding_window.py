"""Tests of os2d.baselines.sliding_window: the aspect-ratio windows and the identity head."""
from __future__ import annotations

import pytest
import torch

from os2d.baselines.sliding_window import aspect_ratio_windows, identity_head
from os2d.model.head import OS2DHead
from os2d.model.transform_net import TransformNet
from os2d.ops.features import l2_normalize


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return l2_normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=0 if len(shape) == 3 else 1,
                        eps=0.0)


def _brute_force(scene: torch.Tensor, fm: torch.Tensor, row: int, col: int) -> float:
    """Mean dot product of the window whose top-left cell is (row - hc//2, col - wc//2); outside = 0."""
    _, _, height, width = scene.shape
    hc, wc = fm.shape[-2:]
    total = 0.0
    for i in range(hc):
        for j in range(wc):
            r, c = row - hc // 2 + i, col - wc // 2 + j
            if 0 <= r < height and 0 <= c < width:
                total += float((scene[0, :, r, c] * fm[:, i, j]).sum())
    return total / (hc * wc)


@pytest.mark.parametrize("hc,wc,top,left", [(3, 4, 2, 5), (2, 5, 4, 1), (1, 1, 0, 0), (4, 4, 4, 6)])
def test_exact_window_match_scores_one_at_its_location(hc, wc, top, left):
    height, width, stride = 8, 10, 16
    scene = _unit(1, 6, height, width, seed=0)
    cls = _unit(6, hc, wc, seed=1)
    scene[0, :, top:top + hc, left:left + wc] = cls
    scores, boxes, corners = aspect_ratio_windows(scene, [cls], stride=stride)
    assert scores.shape == (1, height * width) and boxes.shape == (1, height * width, 4)
    assert corners.shape == (1, height * width, 4, 2)
    # the window starting at (top, left) is reported at (top + hc // 2, left + wc // 2)
    row, col = top + hc // 2, left + wc // 2
    best = int(scores[0].argmax())
    assert best == row * width + col
    assert scores[0, best].item() == pytest.approx(1.0, abs=1e-12)
    assert (scores[0] > 1 - 1e-6).sum().item() == 1
    # the box is the window's pixel extent, the corners are its corners
    x1, y1, x2, y2 = left * stride, top * stride, (left + wc) * stride, (top + hc) * stride
    torch.testing.assert_close(boxes[0, best], torch.tensor([x1, y1, x2, y2], dtype=torch.float64))
    torch.testing.assert_close(corners[0, best], torch.tensor([[x1, y1], [x2, y1], [x1, y2], [x2, y2]],
                                                              dtype=torch.float64))


def test_scores_match_brute_force_including_partial_windows():
    height, width = 5, 6
    scene = _unit(1, 3, height, width, seed=2)
    fms = [_unit(3, 2, 3, seed=3), _unit(3, 3, 2, seed=4), _unit(3, 7, 8, seed=5)]  # last one larger than the scene
    scores, boxes, _ = aspect_ratio_windows(scene, fms, stride=16)
    assert scores.shape == (3, height * width)
    for k, fm in enumerate(fms):
        hc, wc = fm.shape[-2:]
        for row in range(height):
            for col in range(width):
                n = row * width + col
                assert scores[k, n].item() == pytest.approx(_brute_force(scene, fm, row, col), abs=1e-12)
                expected = [(col - wc // 2) * 16, (row - hc // 2) * 16, (col - wc // 2 + wc) * 16,
                            (row - hc // 2 + hc) * 16]
                assert boxes[k, n].tolist() == expected


def test_identity_head_copies_without_transform():
    torch.manual_seed(0)
    net = TransformNet(variant="v2").eval()
    with torch.no_grad():
        net.conv3.weight.normal_(0.0, 0.05)
    head = OS2DHead(transform_net=net, variant="v2", pool_border=1).eval()
    clone = identity_head(head)
    assert clone.transform_net is None and head.transform_net is net
    assert list(clone.parameters()) == []
    assert (clone.variant, clone.grid_size, clone.pool_border, clone.stride) == ("v2", 15, 1, 16)
    scene = _unit(1, 4, 3, 4, seed=6).float()
    cls = _unit(2, 4, 15, 15, seed=7).float()
    with torch.no_grad():
        expected = OS2DHead(transform_net=None, variant="v2", pool_border=1)(scene, cls)
        got = clone(scene, cls)
        original = head(scene, cls)
    torch.testing.assert_close(got.scores, expected.scores)
    torch.testing.assert_close(got.boxes, expected.boxes)
    assert not torch.allclose(original.boxes, got.boxes)  # the original head still uses its TransformNet
