"""Tests of os2d.model.head.OS2DHead: known answers with the identity transform, batching, gradients."""
from __future__ import annotations

import pytest
import torch

from os2d.model.head import OS2DHead
from os2d.model.transform_net import TransformNet
from os2d.ops.boxes import make_anchors
from os2d.ops.features import l2_normalize




def _random_transform_net(in_channels: int, variant: str, seed: int, scale: float = 0.02) -> TransformNet:
    """A TransformNet whose transforms differ from the identity (last layer perturbed), eval mode."""
    torch.manual_seed(seed)
    net = TransformNet(in_channels=in_channels, variant=variant)
    with torch.no_grad():
        net.conv3.weight.normal_(0.0, scale)
    return net.eval()


def _unit_features(*shape: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return l2_normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=1)


@pytest.mark.parametrize("use_net", [False, True])
def test_constant_features_give_score_one_everywhere(use_net):
    """All correlations are 1, so every resampled value and every pooled score is 1."""
    c = 4
    vec = l2_normalize(torch.arange(1.0, c + 1), dim=0, eps=0.0)
    scene = vec.view(1, c, 1, 1).expand(2, c, 5, 6).contiguous()
    cls = vec.view(1, c, 1, 1).expand(3, c, 15, 15).contiguous()
    net = _random_transform_net(225, "v2", seed=0, scale=0.05) if use_net else None
    head = OS2DHead(transform_net=net, variant="v2").eval()
    with torch.no_grad():
        out = head(scene, cls)
    assert out.scores.shape == (2, 3, 5, 6)
    torch.testing.assert_close(out.scores, torch.ones(2, 3, 5, 6))


def test_identity_head_known_answer_window_match():
    """Identity transform, one-hot features: the class matches a 12 x 12 block of scene cells.

    Grid point (i, j) of the location (row, col) samples the feature map at
    ``x = col - 7 + 15 j / 14`` (7.5 * x_local + col + 0.5), same for y. The pooled points j = 2..12
    reach columns col - 5 .. col + 6, so with the "class" block at rows/cols 4..15 the location
    (9, 9) scores exactly 1. At (9, 10) only the last pooled column j = 12 (at x = 16 + 6/7) leaves
    the block, with interpolated value 1/7: score (10 + 1/7) / 11 = 71/77 (the score is separable).
    """
    height = width = 20
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    scene = e1.view(1, 2, 1, 1).repeat(1, 1, height, width)
    scene[0, :, 4:16, 4:16] = e0.view(2, 1, 1)
    cls = e0.view(1, 2, 1, 1).repeat(1, 1, 15, 15)
    head = OS2DHead(transform_net=None, variant="v1")
    out = head(scene, cls)
    scores = out.scores[0, 0]
    assert scores[9, 9].item() == pytest.approx(1.0, abs=1e-6)
    assert scores.flatten().argmax().item() == 9 * width + 9
    assert (scores.flatten() > 1 - 1e-3).sum().item() == 1  # a unique maximum
    for r, c in [(9, 10), (10, 9)]:
        assert scores[r, c].item() == pytest.approx(71 / 77, abs=1e-6)
    # at (9, 8) the first pooled column j = 2 (x = 3 + 1/7) leaves the block: weight 6/7 outside
    assert scores[9, 8].item() == pytest.approx((10 + 1 / 7) / 11, abs=1e-6)
    # identity transform: boxes are the 240 px anchors, corners their corners
    anchors = make_anchors(height, width, stride=16, size=240).view(height, width, 4)
    torch.testing.assert_close(out.boxes[0, 0], anchors)
    x1, y1, x2, y2 = anchors[9, 9]
    torch.testing.assert_close(out.corners[0, 0, 9, 9],
                               torch.tensor([[x1, y1], [x2, y1], [x1, y2], [x2, y2]]))
    identity = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(4, 1, 1).expand(4, height, width)
    torch.testing.assert_close(out.params[0, 0], identity)


def test_v1_and_v2_identity_heads_agree():
    scene = _unit_features(1, 3, 6, 7, seed=1)
    cls = _unit_features(2, 3, 15, 15, seed=2)
    out1 = OS2DHead(transform_net=None, variant="v1")(scene, cls)
    out2 = OS2DHead(transform_net=None, variant="v2")(scene, cls)
    torch.testing.assert_close(out1.scores, out2.scores)
    torch.testing.assert_close(out1.boxes, out2.boxes)
    assert out2.params.shape == (1, 2, 6, 6, 7)


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_batched_classes_and_scenes_equal_one_by_one(variant):
    net = _random_transform_net(225, variant, seed=3)
    head = OS2DHead(transform_net=net, variant=variant).eval()
    scene = _unit_features(2, 8, 4, 5, seed=4)
    cls = _unit_features(3, 8, 15, 15, seed=5)
    with torch.no_grad():
        out = head(scene, cls)
        assert out.scores.shape == (2, 3, 4, 5) and out.boxes.shape == (2, 3, 4, 5, 4)
        assert out.corners.shape == (2, 3, 4, 5, 4, 2) and out.params.shape == (2, 3, net.num_params, 4, 5)
        for b in range(2):
            for k in range(3):
                single = head(scene[b:b + 1], cls[k:k + 1])
                torch.testing.assert_close(out.scores[b, k], single.scores[0, 0], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(out.boxes[b, k], single.boxes[0, 0], rtol=1e-5, atol=1e-4)
                torch.testing.assert_close(out.corners[b, k], single.corners[0, 0], rtol=1e-5, atol=1e-4)
                torch.testing.assert_close(out.params[b, k], single.params[0, 0], rtol=1e-5, atol=1e-6)


def test_boxes_are_tight_around_transformed_corners():
    net = _random_transform_net(225, "v2", seed=6, scale=0.05)
    head = OS2DHead(transform_net=net, variant="v2").eval()
    with torch.no_grad():
        out = head(_unit_features(1, 4, 3, 3, seed=7), _unit_features(1, 4, 15, 15, seed=8))
    corners = out.corners[0, 0]  # [H, W, 4, 2]
    # V2 corners form a parallelogram: TL + BR == TR + BL
    torch.testing.assert_close(corners[..., 0, :] + corners[..., 3, :], corners[..., 1, :] + corners[..., 2, :],
                               rtol=1e-5, atol=1e-3)
    # an affine image of the grid has its extreme points at the corners
    torch.testing.assert_close(out.boxes[0, 0], torch.cat([corners.amin(-2), corners.amax(-2)], -1))
    assert head.anchor_size == 240.0


def test_scores_in_float32_and_detached_scores():
    net = _random_transform_net(225, "v1", seed=9)
    head = OS2DHead(transform_net=net, variant="v1").eval()
    scene = _unit_features(1, 4, 3, 4, seed=10)
    cls = _unit_features(2, 4, 15, 15, seed=11).requires_grad_(True)
    out = head(scene, cls, detached_scores=True)
    assert out.scores.dtype == torch.float32
    torch.testing.assert_close(out.scores_detached, out.scores)
    assert head(scene, cls).scores_detached is None
    # the detached scores do not train the TransformNet, the normal scores do
    out.scores_detached.sum().backward(retain_graph=True)
    assert net.conv3.weight.grad is None or torch.all(net.conv3.weight.grad == 0)
    assert cls.grad is not None and cls.grad.abs().sum() > 0  # still differentiable w.r.t. the features
    out.scores.sum().backward()
    assert net.conv3.weight.grad is not None and net.conv3.weight.grad.abs().sum() > 0


def test_score_gradcheck_wrt_class_features():
    """Small head (5 x 5 grid, 1-point pooling border) in float64; sample points are generic."""
    net = _random_transform_net(25, "v2", seed=12, scale=0.05).double()
    head = OS2DHead(transform_net=net, variant="v2", grid_size=5, pool_border=1).double()
    scene = _unit_features(1, 3, 3, 3, seed=13, dtype=torch.float64)
    cls = _unit_features(1, 3, 5, 5, seed=14, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: head(scene, c).scores, (cls,), fast_mode=True)


def test_identity_head_score_gradcheck_wrt_class_features():
    head = OS2DHead(transform_net=None, variant="v1", grid_size=3, pool_border=0)
    scene = _unit_features(1, 2, 4, 4, seed=15, dtype=torch.float64)
    cls = _unit_features(2, 2, 3, 3, seed=16, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: head(scene, c).scores, (cls,))


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("radius", [0, 1, 2])
@pytest.mark.parametrize("centers", [
    [[0, 0, 0], [1, 5, 7], [2, 12, 16], [1, 6, 0], [0, 3, 3]],  # spread out, at the borders: one window each
    [[1, 5, 7], [1, 6, 8], [1, 5, 9], [1, 7, 7]],  # clustered: one window over all of them
])
def test_head_at_locations_equals_the_dense_head(variant, radius, centers):
    """TransformNet on windows of the correlation (from crops of the scene features) and scores resampled from
    the scene features give the dense output at every location computed."""
    net = _random_transform_net(225, variant, seed=3, scale=0.05)
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    head = OS2DHead(transform_net=net, variant=variant).eval()
    scene, cls = _unit_features(1, 8, 13, 17, seed=4), _unit_features(3, 8, 15, 15, seed=5)
    with torch.no_grad():
        dense = head(scene, cls)
        out = head.at_locations(scene, cls, torch.tensor(centers), radius=radius)
    n, rows, cols = out.index.unbind(1)
    wanted = {(c[0], c[1] + dy, c[2] + dx) for c in centers for dy in range(-radius, radius + 1)
              for dx in range(-radius, radius + 1) if 0 <= c[1] + dy < 13 and 0 <= c[2] + dx < 17}
    assert wanted <= set(map(tuple, out.index.tolist()))  # every requested location (maybe more)
    assert len(set(map(tuple, out.index.tolist()))) == len(out.index)  # no duplicates
    torch.testing.assert_close(out.scores, dense.scores[0][n, rows, cols], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.boxes, dense.boxes[0][n, rows, cols], rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(out.corners, dense.corners[0][n, rows, cols], rtol=1e-6, atol=1e-3)
