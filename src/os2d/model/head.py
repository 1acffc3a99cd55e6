"""The OS2D head: correlation -> transforms -> resampled, pooled scores and boxes.

Two ways to apply it, sharing every step:

* :meth:`OS2DHead.forward` -- densely, at every scene location (training and exact inference);
* :meth:`OS2DHead.at_locations` -- only at chosen locations (the fast cascade's last stage): the
  TransformNet runs on windows of the correlation map, which gives exactly the dense output there.

Only the grid points with a non-zero pooling weight (the inner 11x11 of 15x15) are resampled, in the
dtype of the features (float32): the reference's float64 resampling moves no score by more than
~1e-6 (``tests/model/test_parity_reference.py`` checks 1e-4 against the reference outputs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from os2d.model.transform_net import RECEPTIVE_HALF, TransformNet
from os2d.ops.boxes import corners_to_boxes
from os2d.ops.correlation import correlate
from os2d.ops.grid import (
    base_grid,
    corner_points,
    identity_params,
    location_centers,
    params_to_affine,
    points_to_feature_map,
    points_to_image,
    transform_points,
)
from os2d.ops.resample import pool_mask, pooled_points, sample_channels


@dataclass
class HeadOutput:
    """What the head computes densely for B scenes and K classes.

    Attributes:
        scores: ``Tensor[B, K, H, W]`` recognition scores in [-1, 1].
        boxes: ``Tensor[B, K, H, W, 4]`` xyxy in network-input pixels (not clipped).
        corners: ``Tensor[B, K, H, W, 4, 2]`` transformed grid corners (TL, TR, BL, BR), pixels.
        params: ``Tensor[B, K, P, H, W]`` raw transform parameters.
        scores_detached: ``Tensor[B, K, H, W]`` scores computed with a detached transformation
            (training: used for negatives so that TransformNet learns from positives only).
    """

    scores: torch.Tensor
    boxes: torch.Tensor
    corners: torch.Tensor
    params: torch.Tensor
    scores_detached: Optional[torch.Tensor] = None


@dataclass
class LocationOutput:
    """Head outputs at L chosen locations of N correlation maps.

    Attributes:
        index: ``Tensor[L, 3]`` int64 ``(n, row, col)``: map and location of each output.
        scores: ``Tensor[L]``.
        boxes: ``Tensor[L, 4]`` xyxy in network-input pixels (not clipped).
        corners: ``Tensor[L, 4, 2]``.
    """

    index: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    corners: torch.Tensor


class OS2DHead(nn.Module):
    """Matches scene features with g x g class features at every location.

    Args:
        transform_net: the TransformNet, or ``None`` for the identity transform (the
            "sliding window, square" baseline).
        variant: ``"v1"`` or ``"v2"`` (how the transform parameters are interpreted).
        grid_size: g, side of the class feature grid (15).
        pool_border: grid points ignored at each side when pooling (2).
        stride: backbone stride in pixels (16); anchors are ``stride * grid_size`` pixels wide.
    """

    def __init__(self, *, transform_net: Optional[TransformNet], variant: str = "v1", grid_size: int = 15,
                 pool_border: int = 2, stride: int = 16) -> None:
        super().__init__()
        self.transform_net = transform_net
        self.variant = variant
        self.grid_size = grid_size
        self.pool_border = pool_border
        self.stride = stride
        self.register_buffer("identity", identity_params(variant), persistent=False)
        inner = pooled_points(grid_size, pool_border)
        self.register_buffer("inner_index", inner, persistent=False)
        self.register_buffer("inner_grid", base_grid(grid_size)[inner], persistent=False)
        self.register_buffer("inner_weights", pool_mask(grid_size, pool_border)[inner], persistent=False)

    @property
    def anchor_size(self) -> float:
        return float(self.stride * self.grid_size)

    # ------------------------------------------------------------------ dense
    def forward(self, scene_fm: torch.Tensor, class_fm: torch.Tensor, *, detached_scores: bool = False) -> HeadOutput:
        """Apply the head at every location.

        Args:
            scene_fm: ``Tensor[B, C, H, W]`` L2-normalised scene features.
            class_fm: ``Tensor[K, C, g, g]`` L2-normalised class features.
            detached_scores: also compute scores with the transform detached from the graph.
        """
        b, _, height, width = scene_fm.shape
        k = class_fm.shape[0]
        corr = self.correlation(scene_fm, class_fm)
        # [B*K, S, H, W]
        params = self._params(corr)
        # [B*K, P, H, W]
        affine = params_to_affine(params.permute(0, 2, 3, 1).reshape(b * k, height * width, -1),
                                  variant=self.variant)
        # [B*K, H*W, 2, 3]
        centers = location_centers(height, width, dtype=affine.dtype, device=affine.device).reshape(1, -1, 2)
        # [1, H*W, 2]
        scores = self._scores(corr, affine, centers)
        detached = self._scores(corr, affine.detach(), centers) if detached_scores else None
        corners, boxes = self._corners_and_boxes(affine, centers)
        return HeadOutput(
            scores=scores.reshape(b, k, height, width),
            boxes=boxes.reshape(b, k, height, width, 4),
            corners=corners.reshape(b, k, height, width, 4, 2),
            params=params.reshape(b, k, -1, height, width),
            scores_detached=None if detached is None else detached.reshape(b, k, height, width),
        )

    def correlation(self, scene_fm: torch.Tensor, class_fm: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, C, H, W]`` x ``Tensor[K, C, g, g]`` -> ``Tensor[B*K, g*g, H, W]``."""
        b, _, height, width = scene_fm.shape
        return correlate(scene_fm, class_fm).reshape(b * class_fm.shape[0], -1, height, width)
        # [B*K, S, H, W]

    def _params(self, corr: torch.Tensor) -> torch.Tensor:
        """Transform parameters per location: ``Tensor[N, S, H, W]`` -> ``Tensor[N, P, H, W]``."""
        if self.transform_net is None:
            n, _, height, width = corr.shape
            return self.identity.to(corr.dtype).view(1, -1, 1, 1).expand(n, -1, height, width)
        return self.transform_net(corr)

    # ------------------------------------------------------------------ shared steps
    def _scores(self, corr: torch.Tensor, affine: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """Pooled resampled correlations at L locations of each of the N maps.

        Args:
            corr: ``Tensor[N, S, H, W]``.
            affine: ``Tensor[N, L, 2, 3]`` transforms of the L locations.
            centers: ``Tensor[N or 1, L, 2]`` (col, row) of the locations.

        Returns:
            ``Tensor[N, L]``.
        """
        points = transform_points(affine, self.inner_grid.to(affine.dtype))
        # [N, L, S', 2]
        points_fm = points_to_feature_map(points, centers, half_extent=self.grid_size / 2)
        inner_corr = corr.index_select(1, self.inner_index)
        # [N, S', H, W]
        sampled = sample_channels(inner_corr, points_fm)
        # [N, S', L]
        return torch.einsum("nsl,s->nl", sampled, self.inner_weights.to(sampled.dtype))

    def _corners_and_boxes(self, affine: torch.Tensor, centers: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Corners ``Tensor[N, L, 4, 2]`` and boxes ``Tensor[N, L, 4]`` (pixels) of the transformed grids.

        The grid's bounding box is the box of its corners (the transforms are affine).
        """
        local = transform_points(affine, corner_points(dtype=affine.dtype, device=affine.device))
        # [N, L, 4, 2]
        corners = points_to_image(local, centers, half_extent_px=self.anchor_size / 2, stride=self.stride)
        return corners, corners_to_boxes(corners)

    def identity_scores(self, corr: torch.Tensor) -> torch.Tensor:
        """Scores of the identity transform at every location (the square sliding window):
        ``Tensor[N, S, H, W]`` -> ``Tensor[N, H, W]``."""
        n, _, height, width = corr.shape
        affine = params_to_affine(self.identity.to(corr.dtype), variant=self.variant).expand(n, height * width, 2, 3)
        # [N, H*W, 2, 3]
        centers = location_centers(height, width, dtype=corr.dtype, device=corr.device).reshape(1, -1, 2)
        return self._scores(corr, affine, centers).reshape(n, height, width)

    # ------------------------------------------------------------------ sparse
    def at_locations(self, corr: torch.Tensor, centers: torch.Tensor, *, radius: int = 0) -> LocationOutput:
        """The head's output at the locations within ``radius`` of the given centres.

        Equal to :meth:`forward` at those locations: TransformNet's receptive field is
        ``2 * RECEPTIVE_HALF + 1`` = 15 cells, so it runs on 15 + 2r windows of the correlation map
        (zero outside the map, intermediate layers masked like the dense zero padding).

        Args:
            corr: ``Tensor[N, S, H, W]`` correlation maps (see :meth:`correlation`).
            centers: ``Tensor[M, 3]`` int64 ``(n, row, col)``.
            radius: r, half-size of the square of locations computed around each centre.

        Returns:
            :class:`LocationOutput` over the distinct locations inside the map.
        """
        if centers.numel() == 0:
            return _empty_location_output(corr)
        parts_index, parts_params = [], []
        squares, rects = _plan_windows(centers, radius, corr.shape[-2:])
        if squares.numel():
            index, params = self._square_outputs(corr, squares, radius)
            parts_index.append(index), parts_params.append(params)
        for rect in rects:
            index, params = self._rect_outputs(corr, rect)
            parts_index.append(index), parts_params.append(params)
        index, params = torch.cat(parts_index), torch.cat(parts_params)
        _, _, height, width = corr.shape
        keep = (index[:, 1] >= 0) & (index[:, 1] < height) & (index[:, 2] >= 0) & (index[:, 2] < width)
        index, params = index[keep], params[keep]
        index, first = _unique_rows(index)
        return self._outputs_at(corr, index, params[first])

    def _square_outputs(self, corr: torch.Tensor, centers: torch.Tensor, radius: int):
        """Locations ``Tensor[L, 3]`` and parameters ``Tensor[L, P]`` of (2r+1)^2 squares around centres."""
        params = self._window_params(corr, centers, radius)
        # [M, P, 2r+1, 2r+1]
        offsets = torch.arange(-radius, radius + 1, device=corr.device)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        rows = centers[:, 1, None, None] + dy
        cols = centers[:, 2, None, None] + dx
        # [M, 2r+1, 2r+1]
        index = torch.stack([centers[:, 0, None, None].expand_as(rows), rows, cols], -1).reshape(-1, 3)
        # [M*(2r+1)^2, 3]
        return index, params.permute(0, 2, 3, 1).reshape(index.shape[0], -1)
        # [M*(2r+1)^2, P]

    def _rect_outputs(self, corr: torch.Tensor, rect: Tuple[int, int, int, int, int]):
        """Locations and parameters of every cell of ``rect = (n, row0, col0, row1, col1)`` (one window)."""
        n, y0, x0, y1, x1 = rect
        _, _, height, width = corr.shape
        rows, cols = torch.arange(y0, y1, device=corr.device), torch.arange(x0, x1, device=corr.device)
        grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
        index = torch.stack([torch.full_like(grid_r, n), grid_r, grid_c], -1).reshape(-1, 3)
        # [h*w, 3]
        if self.transform_net is None:
            return index, self.identity.to(corr.dtype).expand(index.shape[0], -1)
        q = RECEPTIVE_HALF
        padded = F.pad(corr[n:n + 1], (q, q, q, q))
        window = padded[:, :, y0:y1 + 2 * q, x0:x1 + 2 * q]
        # [1, S, h+2q, w+2q]
        inside = [_rect_mask(y0 - e, x0 - e, y1 + e, x1 + e, height, width, dtype=corr.dtype) for e in (4, 2)]
        params = self.transform_net.forward_windows(window, inside)
        # [1, P, h, w]
        return index, params[0].permute(1, 2, 0).reshape(index.shape[0], -1)

    def _window_params(self, corr: torch.Tensor, centers: torch.Tensor, radius: int) -> torch.Tensor:
        """TransformNet parameters around each centre: ``Tensor[M, P, 2r+1, 2r+1]``."""
        m = centers.shape[0]
        if self.transform_net is None:
            side = 2 * radius + 1
            return self.identity.to(corr.dtype).view(1, -1, 1, 1).expand(m, -1, side, side)
        _, _, height, width = corr.shape
        q = RECEPTIVE_HALF + radius
        padded = F.pad(corr, (q, q, q, q))
        # [N, S, H+2q, W+2q]
        span = torch.arange(2 * q + 1, device=corr.device)
        rows = (centers[:, 1, None] + span)[:, :, None]
        cols = (centers[:, 2, None] + span)[:, None, :]
        windows = padded[centers[:, 0, None, None], :, rows, cols].permute(0, 3, 1, 2)
        # [M, S, 2q+1, 2q+1]
        inside = [_inside_mask(centers, radius + extra, height, width, dtype=corr.dtype) for extra in (4, 2)]
        return self.transform_net.forward_windows(windows, inside)

    def _outputs_at(self, corr: torch.Tensor, index: torch.Tensor, params: torch.Tensor) -> LocationOutput:
        """Scores and boxes at locations ``index`` ``Tensor[L, 3]`` with parameters ``Tensor[L, P]``."""
        affine = params_to_affine(params, variant=self.variant)
        # [L, 2, 3]
        centers = torch.stack([index[:, 2], index[:, 1]], -1).to(affine.dtype)
        # [L, 2] (col, row)
        scores = torch.empty(index.shape[0], dtype=corr.dtype, device=corr.device)
        for n in index[:, 0].unique().tolist():
            sel = (index[:, 0] == n).nonzero().squeeze(1)
            scores[sel] = self._scores(corr[n:n + 1], affine[sel][None], centers[sel][None])[0]
        corners, boxes = self._corners_and_boxes(affine[None], centers[None])
        return LocationOutput(index=index, scores=scores, boxes=boxes[0], corners=corners[0])


def _plan_windows(centers: torch.Tensor, radius: int, shape):
    """Per map, one window over all its centres' squares when cheaper than one window per centre.

    Cost model: the cells of TransformNet's first layer, 4 beyond the outputs on each side.
    Returns (centres computed square by square ``Tensor[M', 3]``, [rectangles (n, r0, c0, r1, c1)]).
    """
    squares, rects = [], []
    side = 2 * radius + 1
    for n in centers[:, 0].unique().tolist():
        mine = centers[centers[:, 0] == n]
        r0, c0 = max(0, int(mine[:, 1].min()) - radius), max(0, int(mine[:, 2].min()) - radius)
        r1 = min(int(shape[0]), int(mine[:, 1].max()) + radius + 1)
        c1 = min(int(shape[1]), int(mine[:, 2].max()) + radius + 1)
        union = (r1 - r0 + 8) * (c1 - c0 + 8)
        if union < mine.shape[0] * (side + 8) ** 2:
            rects.append((n, r0, c0, r1, c1))
        else:
            squares.append(mine)
    return (torch.cat(squares) if squares else centers[:0]), rects


def _rect_mask(y0: int, x0: int, y1: int, x1: int, height: int, width: int, *, dtype) -> torch.Tensor:
    """``Tensor[1, 1, y1-y0, x1-x0]``: 1 where the cell lies inside the H x W map."""
    rows = torch.arange(y0, y1)
    cols = torch.arange(x0, x1)
    ok = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
    return ok.to(dtype)[None, None]


def _inside_mask(centers: torch.Tensor, half: int, height: int, width: int, *, dtype) -> torch.Tensor:
    """``Tensor[M, 1, 2h+1, 2h+1]``: 1 where ``centre + offset`` lies inside the H x W map."""
    offsets = torch.arange(-half, half + 1, device=centers.device)
    rows = centers[:, 1, None] + offsets
    cols = centers[:, 2, None] + offsets
    ok_r = (rows >= 0) & (rows < height)
    ok_c = (cols >= 0) & (cols < width)
    return (ok_r[:, :, None] & ok_c[:, None, :]).to(dtype)[:, None]


def _unique_rows(index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of ``Tensor[L, 3]`` (sorted) and the position of each one's first occurrence."""
    unique, inverse = torch.unique(index, dim=0, return_inverse=True)
    positions = torch.arange(inverse.numel(), device=index.device)
    first = torch.full((unique.shape[0],), inverse.numel(), dtype=torch.int64, device=index.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return unique, first


def _empty_location_output(corr: torch.Tensor) -> LocationOutput:
    return LocationOutput(index=torch.zeros(0, 3, dtype=torch.int64, device=corr.device),
                          scores=corr.new_zeros(0), boxes=corr.new_zeros(0, 4), corners=corr.new_zeros(0, 4, 2))
