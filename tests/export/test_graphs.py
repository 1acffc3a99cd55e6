"""The export-friendly modules compute what the model computes (PyTorch only, no export)."""
from __future__ import annotations

import pytest
import torch

from os2d.export.graphs import HeadGraph, normalized_grid
from os2d.model.head import OS2DHead
from os2d.model.transform_net import TransformNet
from os2d.ops.resample import normalize_coords

#: Added to the identity transform parameters (V1: sx, tx, sy, ty; V2: a 2x3 matrix, inverted).
SHIFT = {"v1": [-0.2, 0.1, 0.15, -0.05], "v2": [0.1, 0.2, 0.05, -0.1, -0.15, -0.05]}


def make_head(variant: str, *, transform: bool, seed: int = 0) -> OS2DHead:
    """A head whose TransformNet predicts non-identity transforms (last layer perturbed and shifted)."""
    torch.manual_seed(seed)
    net = TransformNet(in_channels=225, variant=variant) if transform else None
    if net is not None:
        with torch.no_grad():
            net.conv3.weight.normal_(0.0, 5e-2)
            net.conv3.bias.add_(torch.tensor(SHIFT[variant]))
        net.eval()
    return OS2DHead(transform_net=net, variant=variant).eval()


def features(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen), dim=1)


@pytest.mark.parametrize("variant,transform", [("v1", True), ("v2", True), ("v1", False)])
@pytest.mark.parametrize("height,width", [(9, 13), (1, 6), (2, 2)])
@torch.no_grad()
def test_head_graph_equals_head_forward(variant, transform, height, width):
    head = make_head(variant, transform=transform)
    scene, classes = features(1, 16, height, width, seed=1), features(3, 16, 15, 15, seed=2)
    want = head(scene, classes)
    scores, boxes, corners = HeadGraph(head)(scene, classes)
    torch.testing.assert_close(scores, want.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(boxes, want.boxes, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(corners, want.corners, rtol=1e-6, atol=1e-4)
    if transform:  # the transforms are not the identity: boxes differ from the anchors
        assert float((want.boxes[..., 2] - want.boxes[..., 0] - head.anchor_size).abs().max()) > 20.0


@pytest.mark.parametrize("height,width", [(1, 1), (1, 7), (12, 5)])
def test_normalized_grid_equals_normalize_coords(height, width):
    points = torch.rand(4, 6, 2, generator=torch.Generator().manual_seed(3)) * 16 - 2
    torch.testing.assert_close(normalized_grid(points, height=height, width=width),
                               normalize_coords(points, height=height, width=width), rtol=0, atol=0)
