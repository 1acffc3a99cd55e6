"""Tests of os2d.ops.grid: affine parametrisations, grids in channel order, frame conversions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from os2d.ops.grid import (base_grid, corner_points, identity_params, invert_affine, local_to_feature_map,
                           local_to_image, location_centers, params_to_affine, transform_points)


def _random_affine(n: int, seed: int) -> torch.Tensor:
    """Well-conditioned random ``Tensor[n, 2, 3]`` (near the identity)."""
    g = torch.Generator().manual_seed(seed)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    return eye + 0.3 * torch.randn(n, 2, 3, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------ parameters
def test_params_to_affine_v1_known_answer():
    params = torch.tensor([[2.0, 0.5, 3.0, -0.25]])
    expected = torch.tensor([[[2.0, 0.0, 0.5], [0.0, 3.0, -0.25]]])
    torch.testing.assert_close(params_to_affine(params, variant="v1"), expected)


def test_params_to_affine_v2_is_the_inverse_known_answer():
    # A = [[2, 0, 1], [0, 4, -2]]: x' = 2x + 1, y' = 4y - 2  ->  x = 0.5x' - 0.5, y = 0.25y' + 0.5
    params = torch.tensor([2.0, 0.0, 1.0, 0.0, 4.0, -2.0], dtype=torch.float64)
    expected = torch.tensor([[0.5, 0.0, -0.5], [0.0, 0.25, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(params_to_affine(params, variant="v2"), expected)


def test_params_to_affine_keeps_leading_dims():
    params = torch.randn(2, 3, 4, 6, dtype=torch.float64) * 0.1 + identity_params("v2").double()
    assert params_to_affine(params, variant="v2").shape == (2, 3, 4, 2, 3)
    assert params_to_affine(params[..., :4], variant="v1").shape == (2, 3, 4, 2, 3)


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_identity_params_give_identity_affine(variant):
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(params_to_affine(identity_params(variant), variant=variant), eye)


def test_invert_affine_round_trip_and_composition():
    a = _random_affine(20, seed=0)
    inv = invert_affine(a)
    torch.testing.assert_close(invert_affine(inv), a, rtol=1e-10, atol=1e-10)
    # A maps points p to A p; inv(A) maps them back
    pts = base_grid(5, dtype=torch.float64)
    mapped = transform_points(a, pts)  # [20, 25, 2]
    homog = torch.cat([mapped, torch.ones_like(mapped[..., :1])], -1)  # [20, 25, 3]
    back = torch.einsum("nij,nsj->nsi", inv, homog)
    torch.testing.assert_close(back, pts[:, :2].expand(20, -1, -1), rtol=1e-10, atol=1e-10)


def test_params_to_affine_v2_gradcheck():
    params = _random_affine(3, seed=1).reshape(3, 6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: params_to_affine(p, variant="v2"), (params,))


def test_unknown_variant():
    with pytest.raises(ValueError, match="'v3'"):
        params_to_affine(torch.zeros(4), variant="v3")
    with pytest.raises(ValueError, match="'v3'"):
        identity_params("v3")


# ------------------------------------------------------------------------------------------ grids
def test_base_grid_channel_order_known_answer():
    grid = base_grid(3)
    assert grid.shape == (9, 3)
    # point s is cell (i, j) = (s % 3, s // 3): x = -1 + j, y = -1 + i for g = 3
    for s in range(9):
        i, j = s % 3, s // 3
        torch.testing.assert_close(grid[s], torch.tensor([-1.0 + j, -1.0 + i, 1.0]))
    # g = 15: spacing 2/14, point (i, j) = (3, 7) -> (x, y) = (0, -1 + 6/14)
    g15 = base_grid(15, dtype=torch.float64)
    torch.testing.assert_close(g15[7 * 15 + 3, :2], torch.tensor([0.0, -1.0 + 6.0 / 14.0], dtype=torch.float64))


def test_transform_points_matches_affine_grid_transposed():
    """The reference builds grids with F.affine_grid(A, (., 1, 15, 15), align_corners=True)."""
    a = _random_affine(4, seed=2)
    ours = transform_points(a, base_grid(15, dtype=torch.float64))  # [4, 225, 2], s = j*15 + i
    ref = F.affine_grid(a, (4, 1, 15, 15), align_corners=True)  # [4, i, j, 2]
    torch.testing.assert_close(ours, ref.transpose(1, 2).reshape(4, 225, 2), rtol=1e-12, atol=1e-12)


def test_corner_points_order():
    corners = transform_points(torch.tensor([[2.0, 0.0, 10.0], [0.0, 3.0, 20.0]]), corner_points())
    # TL, TR, BL, BR of x' = 2x + 10, y' = 3y + 20
    expected = torch.tensor([[8.0, 17.0], [12.0, 17.0], [8.0, 23.0], [12.0, 23.0]])
    torch.testing.assert_close(corners, expected)


def test_location_centers_are_col_row():
    centers = location_centers(2, 3)
    assert centers.shape == (2, 3, 2)
    torch.testing.assert_close(centers[1, 2], torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(centers[0, 1], torch.tensor([1.0, 0.0]))


def test_local_to_feature_map_includes_half_cell_offset():
    pts = torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]])
    points = pts.expand(2, 3, 3, 2)  # [H=2, W=3, S=3, 2]
    out = local_to_feature_map(points, half_extent=7.5)
    # location (row 1, col 2): x = 7.5 * x_local + 2 + 0.5, y = 7.5 * y_local + 1 + 0.5
    torch.testing.assert_close(out[1, 2], torch.tensor([[-5.0, -6.0], [2.5, 1.5], [10.0, 9.0]]))
    # grid point j of a 15-grid lands at col - 7 + 15 j / 14 (points 15/14 cells apart)
    grid = base_grid(15, dtype=torch.float64)[:, :2].expand(1, 1, 225, 2)
    fm = local_to_feature_map(grid, half_extent=7.5)[0, 0]
    j = torch.arange(15, dtype=torch.float64).repeat_interleave(15)
    torch.testing.assert_close(fm[:, 0], -7.0 + 15.0 * j / 14.0)


def test_local_to_image_anchor_corners():
    """Corners of the identity grid are the 240 px anchor of the location (anchor 0 = [-112, -112, 128, 128])."""
    corners = corner_points()[:, :2].expand(2, 2, 4, 2)
    out = local_to_image(corners, half_extent_px=120.0, stride=16)
    torch.testing.assert_close(out[0, 0], torch.tensor([[-112.0, -112.0], [128.0, -112.0],
                                                        [-112.0, 128.0], [128.0, 128.0]]))
    # location (row 1, col 0): y shifted by one stride
    torch.testing.assert_close(out[1, 0, 0], torch.tensor([-112.0, -96.0]))
