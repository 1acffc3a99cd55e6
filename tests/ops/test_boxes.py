"""Tests of os2d.ops.boxes: anchors and the box encoding."""
from __future__ import annotations

import math

import pytest
import torch

from os2d.ops.boxes import clip_boxes, corners_to_boxes, decode_boxes, encode_boxes, make_anchors, nonempty


def _random_boxes(n: int, generator: torch.Generator, min_size: float = 1.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 500
    wh = min_size + torch.rand(n, 2, generator=generator, dtype=torch.float64) * 200
    return torch.cat([xy, xy + wh], dim=1)


# ------------------------------------------------------------------------------------------ encoding
def test_encode_known_answer():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    boxes = torch.tensor([[2.0, 2.0, 12.0, 12.0], [0.0, 0.0, 20.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    codes = encode_boxes(boxes, anchors)
    expected = torch.tensor([
        [2.0, 2.0, 0.0, 0.0],  # centre shift 2 px on a 10 px anchor, times weight 10
        [5.0, 0.0, 5.0 * math.log(2.0), 0.0],  # twice as wide: centre +5, dw = 5 * log 2
        [0.0, 0.0, 0.0, 0.0],
    ])
    torch.testing.assert_close(codes, expected)


def test_encode_matches_torchvision_box_coder():
    from torchvision.models.detection._utils import BoxCoder

    g = torch.Generator().manual_seed(0)
    boxes, anchors = _random_boxes(50, g).float(), _random_boxes(50, g).float()
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(encode_boxes(boxes, anchors), coder.encode_single(boxes, anchors),
                               rtol=1e-4, atol=1e-4)
    codes = torch.randn(50, 4, generator=g)
    torch.testing.assert_close(decode_boxes(codes, anchors), coder.decode_single(codes, anchors),
                               rtol=1e-4, atol=1e-3)


def test_encode_decode_round_trip_with_leading_dims():
    g = torch.Generator().manual_seed(1)
    boxes = _random_boxes(24, g).view(2, 3, 4, 4)
    anchors = _random_boxes(4, g)  # broadcast over the leading [2, 3]
    codes = encode_boxes(boxes, anchors)
    assert codes.shape == (2, 3, 4, 4)
    torch.testing.assert_close(decode_boxes(codes, anchors), boxes, rtol=1e-9, atol=1e-9)
    # non-default weights too
    w = (1.0, 2.0, 3.0, 4.0)
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, anchors, w), anchors, w), boxes)


def test_degenerate_boxes_are_enlarged_to_one_pixel():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0]])
    boxes = torch.tensor([[4.0, 4.0, 4.0, 6.0], [5.0, 5.0, 6.0, 6.0]])  # zero width / normal
    codes = encode_boxes(boxes, anchors)
    assert torch.isfinite(codes).all()
    # zero-width box (centre 4, 5) -> width 1 about its centre; height 2
    torch.testing.assert_close(codes[0], torch.tensor([-1.0, 0.0, 5 * math.log(0.1), 5 * math.log(0.2)]))
    # the point anchor behaves as a 1 x 1 box centred at (5, 5)
    torch.testing.assert_close(codes[1], torch.tensor([5.0, 5.0, 0.0, 0.0]))
    torch.testing.assert_close(decode_boxes(codes, anchors)[0], torch.tensor([3.5, 4.0, 4.5, 6.0]))


def test_decode_clamps_log_size():
    anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 1e4, 1e4]])
    box = decode_boxes(huge, anchors)
    assert torch.isfinite(box).all()
    torch.testing.assert_close(box[0, 2] - box[0, 0], torch.tensor(1000.0))
    box = decode_boxes(huge, anchors, clamp=math.log(2.0))
    torch.testing.assert_close(box[0], torch.tensor([-8.0, -8.0, 24.0, 24.0]))


def test_bad_weights_raise():
    with pytest.raises(ValueError, match="weights"):
        encode_boxes(torch.zeros(1, 4), torch.zeros(1, 4), weights=(1.0, 1.0))




def test_make_anchors_known_answer():
    anchors = make_anchors(2, 3, stride=16, size=240)
    assert anchors.shape == (6, 4)
    torch.testing.assert_close(anchors[0], torch.tensor([-112.0, -112.0, 128.0, 128.0]))
    # row-major: index 4 is row 1, col 1
    torch.testing.assert_close(anchors[4], torch.tensor([-96.0, -96.0, 144.0, 144.0]))


def test_make_anchors_empty():
    assert make_anchors(0, 5, stride=16, size=240).shape == (0, 4)


def test_clip_and_nonempty():
    boxes = torch.tensor([[-5.0, -5.0, 20.0, 30.0], [50.0, 0.0, 60.0, 10.0]])
    clipped = clip_boxes(boxes, width=40, height=25)
    torch.testing.assert_close(clipped, torch.tensor([[0.0, 0.0, 20.0, 25.0], [40.0, 0.0, 40.0, 10.0]]))
    assert nonempty(clipped).tolist() == [True, False]


def test_corners_to_boxes():
    corners = torch.tensor([[[1.0, 2.0], [5.0, 0.0], [0.0, 7.0], [4.0, 3.0]]])
    torch.testing.assert_close(corners_to_boxes(corners), torch.tensor([[0.0, 0.0, 5.0, 7.0]]))
