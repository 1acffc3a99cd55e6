"""Tests of os2d.ops.resample: per-channel resampling of the correlation volume, and pooling."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from os2d.ops.resample import normalize_coords, pool_mask, pool_scores, resample_correlation


def _loop_resample(corr: torch.Tensor, points_fm: torch.Tensor) -> torch.Tensor:
    """Reference: one grid_sample call per (item, channel), coordinates normalised by hand."""
    n, s, height, width = corr.shape
    out = torch.empty_like(corr)
    for a in range(n):
        for c in range(s):
            pts = points_fm[a, :, :, c]  # [H, W, 2] (x, y)
            gx = (pts[..., 0] / (width - 1) * 2 - 1).clamp(-1, 1)
            gy = (pts[..., 1] / (height - 1) * 2 - 1).clamp(-1, 1)
            grid = torch.stack([gx, gy], -1)[None]  # [1, H, W, 2]
            out[a, c] = F.grid_sample(corr[a, c][None, None], grid, mode="bilinear", padding_mode="border",
                                      align_corners=True)[0, 0]
    return out


def _generic_points(n: int, s: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Points strictly inside the map and away from integer grid lines: ``Tensor[n, H, W, s, 2]``."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.stack([torch.randint(0, width - 1, (n, height, width, s), generator=g),
                         torch.randint(0, height - 1, (n, height, width, s), generator=g)], -1)
    frac = 0.2 + 0.6 * torch.rand(n, height, width, s, 2, generator=g, dtype=torch.float64)
    return cells.double() + frac


def test_normalize_coords_known_answer_and_clamp():
    pts = torch.tensor([[0.0, 0.0], [4.0, 2.0], [2.0, 1.0], [-3.0, 7.0]])
    out = normalize_coords(pts, height=3, width=5)
    # x / (W - 1) * 2 - 1 and y / (H - 1) * 2 - 1, clamped to [-1, 1]
    torch.testing.assert_close(out, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-1.0, 1.0]]))


def test_resample_linear_ramp_known_answer():
    """Bilinear sampling reproduces a function that is affine in x and y exactly."""
    height, width = 4, 5
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    corr = torch.stack([xs + 10 * ys, 2 * xs - ys])[None]  # [1, 2, H, W]
    points = torch.zeros(1, height, width, 2, 2, dtype=torch.float64)
    points[..., 0, :] = torch.tensor([1.5, 2.25], dtype=torch.float64)  # channel 0 everywhere at (1.5, 2.25)
    points[..., 1, :] = torch.tensor([3.75, 0.5], dtype=torch.float64)  # channel 1 everywhere at (3.75, 0.5)
    points[0, 1, 1, 0] = torch.tensor([-3.0, 1.0], dtype=torch.float64)  # left of the map: clamped to x = 0
    points[0, 2, 3, 1] = torch.tensor([9.0, 9.0], dtype=torch.float64)  # past the corner: clamped to (4, 3)
    out = resample_correlation(corr, points)
    expected = torch.empty(1, 2, height, width, dtype=torch.float64)
    expected[0, 0] = 1.5 + 22.5
    expected[0, 1] = 7.5 - 0.5
    expected[0, 0, 1, 1] = 0.0 + 10.0
    expected[0, 1, 2, 3] = 8.0 - 3.0
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_resample_integer_points_pick_values():
    g = torch.Generator().manual_seed(0)
    corr = torch.randn(1, 3, 3, 4, generator=g, dtype=torch.float64)
    points = torch.zeros(1, 3, 4, 3, 2, dtype=torch.float64)
    points[..., 0, :] = torch.tensor([3.0, 2.0], dtype=torch.float64)
    points[..., 1, :] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    points[..., 2, :] = torch.tensor([2.0, 0.0], dtype=torch.float64)
    out = resample_correlation(corr, points)
    assert torch.equal(out[0, 0], corr[0, 0, 2, 3].expand(3, 4))
    assert torch.equal(out[0, 1], corr[0, 1, 1, 0].expand(3, 4))
    assert torch.equal(out[0, 2], corr[0, 2, 0, 2].expand(3, 4))


def test_resample_matches_per_channel_loop():
    g = torch.Generator().manual_seed(1)
    n, s, height, width = 2, 9, 5, 6
    corr = torch.randn(n, s, height, width, generator=g, dtype=torch.float64)
    # any points, including outside the map (border clamp) and on grid lines
    points = torch.rand(n, height, width, s, 2, generator=g, dtype=torch.float64) * 9 - 2
    points[0, 0, 0, 0] = torch.tensor([2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(resample_correlation(corr, points), _loop_resample(corr, points),
                               rtol=1e-12, atol=1e-12)
    # float32 correlations: result is float32, points are cast
    out32 = resample_correlation(corr.float(), points)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, _loop_resample(corr, points).float(), rtol=1e-5, atol=1e-5)


def test_resample_gradcheck_correlation_and_points():
    g = torch.Generator().manual_seed(2)
    n, s, height, width = 1, 4, 3, 4
    corr = torch.randn(n, s, height, width, generator=g, dtype=torch.float64, requires_grad=True)
    points = _generic_points(n, s, height, width, seed=3).requires_grad_(True)
    assert torch.autograd.gradcheck(resample_correlation, (corr, points))


def test_pool_mask_paper_default():
    mask = pool_mask(15, 2)
    assert mask.shape == (225,)
    grid = mask.view(15, 15)
    assert torch.all(grid[2:13, 2:13] == 1.0 / 121)
    assert grid.sum().item() == pytest.approx(1.0)
    assert torch.count_nonzero(grid) == 121
    assert torch.all(grid[:2] == 0) and torch.all(grid[:, 13:] == 0)


def test_pool_mask_small_and_border_error():
    torch.testing.assert_close(pool_mask(3, 1), torch.tensor([0, 0, 0, 0, 1.0, 0, 0, 0, 0]))
    torch.testing.assert_close(pool_mask(2, 0), torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="border 8"):
        pool_mask(15, 8)


def test_pool_scores_known_answer():
    sampled = torch.arange(8, dtype=torch.float64).view(1, 4, 1, 2)  # channel s holds (2s, 2s + 1)
    weights = torch.tensor([0.5, 0.25, 0.25, 0.0])
    out = pool_scores(sampled, weights)
    assert out.shape == (1, 1, 2)
    # 0.5 * (0, 1) + 0.25 * (2, 3) + 0.25 * (4, 5)
    torch.testing.assert_close(out[0, 0], torch.tensor([1.5, 2.5], dtype=torch.float64))
