"""Resampling the correlation volume at per-location transformed grids, and pooling."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize_coords(points_fm: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    """Feature-map coordinates (x, y) -> ``[-1, 1]`` (align_corners=True), clamped to the map."""
    scale = points_fm.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    return (points_fm * scale - 1.0).clamp(-1.0, 1.0)


def sample_channels(corr: torch.Tensor, points_fm: torch.Tensor) -> torch.Tensor:
    """Sample channel ``s`` of the correlation volume at point ``s`` of every one of L locations.

    ``out[n, s, l] = corr[n, s](points_fm[n, l, s])`` with bilinear interpolation, border padding and
    coordinates clamped to the map: one batched ``grid_sample`` (each channel at its own points).

    Args:
        corr: ``Tensor[N, S, H, W]`` correlations (N = B*K, S = grid points sampled).
        points_fm: ``Tensor[N, L, S, 2]`` (x, y) in feature-map coordinates.

    Returns:
        ``Tensor[N, S, L]`` in the dtype of ``corr``.
    """
    n, s, height, width = corr.shape
    assert points_fm.shape[0] == n and points_fm.shape[2] == s and points_fm.shape[3] == 2, \
        (points_fm.shape, corr.shape)
    locations = points_fm.shape[1]
    grid = normalize_coords(points_fm.to(corr.dtype), height=height, width=width)
    grid = grid.permute(0, 2, 1, 3).reshape(n * s, 1, locations, 2)
    # [N*S, 1, L, 2]
    sampled = F.grid_sample(corr.reshape(n * s, 1, height, width), grid, mode="bilinear",
                            padding_mode="border", align_corners=True)
    # [N*S, 1, 1, L]
    return sampled.reshape(n, s, locations)
    # [N, S, L]


def resample_correlation(corr: torch.Tensor, points_fm: torch.Tensor) -> torch.Tensor:
    """:func:`sample_channels` at every location of the map.

    Args:
        corr: ``Tensor[N, S, H, W]``.
        points_fm: ``Tensor[N, H, W, S, 2]`` (x, y) in feature-map coordinates.

    Returns:
        ``Tensor[N, S, H, W]``.
    """
    n, s, height, width = corr.shape
    assert points_fm.shape == (n, height, width, s, 2), (points_fm.shape, corr.shape)
    flat = points_fm.reshape(n, height * width, s, 2)
    # [N, H*W, S, 2]
    return sample_channels(corr, flat).reshape(n, s, height, width)
    # [N, S, H, W]


def pool_mask(grid_size: int, border: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Average-pooling weights over grid points ignoring a border: ``Tensor[g*g]`` summing to 1."""
    inner = grid_size - 2 * border
    if inner <= 0:
        raise ValueError(f"pool border {border} leaves no points in a {grid_size}x{grid_size} grid")
    mask = torch.zeros(grid_size, grid_size, dtype=dtype, device=device)
    mask[border:grid_size - border, border:grid_size - border] = 1.0 / (inner * inner)
    return mask.reshape(-1)
    # [g*g]


def pooled_points(grid_size: int, border: int, *, device=None) -> torch.Tensor:
    """Indices (in channel order) of the grid points with a non-zero pooling weight: ``Tensor[S']``."""
    return pool_mask(grid_size, border, device=device).nonzero().squeeze(1)


def pool_scores(sampled: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over grid points: ``Tensor[N, S, ...]`` x ``Tensor[S]`` -> ``Tensor[N, ...]``."""
    return torch.einsum("ns...,s->n...", sampled, weights.to(sampled.dtype))
