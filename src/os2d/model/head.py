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
from torch import nn

from os2d.model.transform_net import TransformNet
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
    def at_locations(self, scene_fm: torch.Tensor, class_fm: torch.Tensor, centers: torch.Tensor, *,
                     radius: int = 0, transform_dtype: torch.dtype = torch.float32) -> LocationOutput:
        """The head's output at the locations within ``radius`` of the given centres, equal to
        :meth:`forward` there, computed from the scene features alone (:mod:`os2d.model.head_windows`).

        Args:
            scene_fm: ``Tensor[1, C, H, W]`` L2-normalised scene features (one scene).
            class_fm: ``Tensor[K, C, g, g]`` class features.
            centers: ``Tensor[M, 3]`` int64 ``(class entry, row, col)``.
            radius: r, half-size of the square of locations computed around each centre.
            transform_dtype: ``torch.bfloat16`` runs the windows' correlation and TransformNet in
                bfloat16 (autocast; the scores are still resampled in the features' dtype): several
                times faster where the hardware has bfloat16 matrix units, transform parameters
                within ~1e-2.

        Returns:
            :class:`LocationOutput` over the distinct locations inside the map (``index[:, 0]`` is
            the class entry); windows over clustered centres may add neighbouring locations.
        """
        from os2d.model.head_windows import head_at_locations

        return head_at_locations(self, scene_fm, class_fm, centers, radius=radius, transform_dtype=transform_dtype)


def unique_rows(index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of ``Tensor[L, 3]`` (sorted) and the position of each one's first occurrence."""
    unique, inverse = torch.unique(index, dim=0, return_inverse=True)
    positions = torch.arange(inverse.numel(), device=index.device)
    first = torch.full((unique.shape[0],), inverse.numel(), dtype=torch.int64, device=index.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return unique, first
