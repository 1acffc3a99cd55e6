"""Affine transforms per location, their sampling grids, and boxes.

Local frame: each scene feature-map location ``(row, col)`` owns an anchor window whose local
coordinates span ``[-1, 1]^2``. A transform ``A`` (2x3) maps output-grid points ``(x, y, 1)``
to local source coordinates. Point order follows the correlation channels: point ``s`` is grid
cell ``(i, j) = (s % g, s // g)`` at ``x = -1 + 2j/(g-1)``, ``y = -1 + 2i/(g-1)``.
"""
from __future__ import annotations

import torch


def params_to_affine(params: torch.Tensor, *, variant: str) -> torch.Tensor:
    """TransformNet outputs -> affine matrices.

    Args:
        params: ``Tensor[..., P]``; P = 4 for ``"v1"`` (sx, tx, sy, ty), 6 for ``"v2"``.
        variant: ``"v1"`` (translation + scale) or ``"v2"`` (full affine, inverted).

    Returns:
        ``Tensor[..., 2, 3]`` mapping output-grid coordinates to local source coordinates.
    """
    if variant == "v1":
        assert params.shape[-1] == 4, params.shape
        sx, tx, sy, ty = params.unbind(-1)
        zero = torch.zeros_like(sx)
        rows = [torch.stack([sx, zero, tx], -1), torch.stack([zero, sy, ty], -1)]
        return torch.stack(rows, -2)
    if variant == "v2":
        assert params.shape[-1] == 6, params.shape
        a = params.reshape(*params.shape[:-1], 2, 3)
        # [..., 2, 3]
        return invert_affine(a)
    raise ValueError(f"unknown transform variant {variant!r}; expected 'v1' or 'v2'")


def invert_affine(a: torch.Tensor) -> torch.Tensor:
    """Top two rows of the inverse of ``[[a], [0, 0, 1]]``. ``Tensor[..., 2, 3]`` -> same shape."""
    lin = a[..., :2]
    t = a[..., 2:]
    det = lin[..., 0, 0] * lin[..., 1, 1] - lin[..., 0, 1] * lin[..., 1, 0]
    inv_lin = torch.stack(
        [torch.stack([lin[..., 1, 1], -lin[..., 0, 1]], -1),
         torch.stack([-lin[..., 1, 0], lin[..., 0, 0]], -1)], -2
    ) / det[..., None, None]
    inv_t = -inv_lin @ t
    return torch.cat([inv_lin, inv_t], -1)


def identity_params(variant: str) -> torch.Tensor:
    """The transform parameters of the identity: ``Tensor[P]``."""
    if variant == "v1":
        return torch.tensor([1.0, 0.0, 1.0, 0.0])
    if variant == "v2":
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    raise ValueError(f"unknown transform variant {variant!r}; expected 'v1' or 'v2'")


def base_grid(grid_size: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Homogeneous output-grid points in channel order: ``Tensor[g*g, 3]`` rows ``(x, y, 1)``."""
    lin = torch.linspace(-1.0, 1.0, grid_size, dtype=dtype, device=device)
    xs = lin.repeat_interleave(grid_size)  # s // g -> j
    ys = lin.repeat(grid_size)  # s % g -> i
    return torch.stack([xs, ys, torch.ones_like(xs)], -1)


def transform_points(affine: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``Tensor[..., 2, 3]`` to homogeneous points ``Tensor[S, 3]`` -> ``Tensor[..., S, 2]``."""
    return torch.einsum("...ij,sj->...si", affine, points)


def corner_points(*, dtype=torch.float32, device=None) -> torch.Tensor:
    """Homogeneous corners (top-left, top-right, bottom-left, bottom-right): ``Tensor[4, 3]``."""
    return torch.tensor(
        [[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=dtype, device=device
    )


def location_centers(height: int, width: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(col, row)`` of every feature-map location, row-major: ``Tensor[H, W, 2]``."""
    rows = torch.arange(height, dtype=dtype, device=device)
    cols = torch.arange(width, dtype=dtype, device=device)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([grid_c, grid_r], -1)


def points_to_feature_map(points: torch.Tensor, centers: torch.Tensor, *, half_extent: float) -> torch.Tensor:
    """Local points ``Tensor[..., S, 2]`` of locations ``centers`` ``Tensor[..., 2]`` (col, row) -> map (x, y).

    ``x_fm = half_extent * x_local + col + 0.5`` (the reference's convention, +0.5 included).
    """
    return half_extent * points + centers[..., None, :] + 0.5


def points_to_image(points: torch.Tensor, centers: torch.Tensor, *, half_extent_px: float,
                    stride: float) -> torch.Tensor:
    """Local points ``Tensor[..., S, 2]`` of locations ``centers`` ``Tensor[..., 2]`` -> image pixels.

    ``x_img = half_extent_px * x_local + (col + 0.5) * stride``.
    """
    return half_extent_px * points + (centers[..., None, :] + 0.5) * stride


def local_to_feature_map(points: torch.Tensor, *, half_extent: float) -> torch.Tensor:
    """:func:`points_to_feature_map` for every location: ``Tensor[..., H, W, S, 2]``, same shape."""
    height, width = points.shape[-4], points.shape[-3]
    centers = location_centers(height, width, dtype=points.dtype, device=points.device)
    return points_to_feature_map(points, centers, half_extent=half_extent)


def local_to_image(points: torch.Tensor, *, half_extent_px: float, stride: float) -> torch.Tensor:
    """:func:`points_to_image` for every location: ``Tensor[..., H, W, S, 2]``, same shape."""
    height, width = points.shape[-4], points.shape[-3]
    centers = location_centers(height, width, dtype=points.dtype, device=points.device)
    return points_to_image(points, centers, half_extent_px=half_extent_px, stride=stride)
